"""Model and data names resolve to the hub when it is reachable, to embedded copies when not."""

import pytest

from budgetft import hub
from budgetft.data.sources import load_splits, resolve_source
from budgetft.models import loading
from budgetft.models.loading import ModelError, ResolvedModel, load_model, load_tokenizer, resolve_model
from budgetft.spec import DataSpec, ModelSpec

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture
def hub_up(monkeypatch):
    monkeypatch.setattr(loading, "hub_reachable", lambda: True)
    import budgetft.data.sources as sources

    monkeypatch.setattr(sources, "hub_reachable", lambda: True)


def test_hub_name_resolves_to_hub_when_reachable(hub_up, monkeypatch):
    calls = {}

    class FakeModel:
        config = type("C", (), {"use_cache": True})()

        def parameters(self):
            return iter(())

        def buffers(self):
            return iter(())

    def fake_from_pretrained(name, **kwargs):
        calls["model"] = (name, kwargs)
        return FakeModel()

    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    resolved = resolve_model(ModelSpec(name=SMOL, revision="main"))
    assert resolved == ResolvedModel("hub", SMOL, "main")
    model = load_model(resolved)
    assert calls["model"][0] == SMOL and calls["model"][1]["revision"] == "main"
    assert model.config.use_cache is False


def test_hub_data_set_loads_through_datasets(hub_up, monkeypatch):
    import datasets

    seen = []

    class FakeSplit:
        def __init__(self, split):
            self.split = split

        def to_list(self):
            return [{"question": "q", "passage": "p", "answer": self.split == "train"}]

    def fake_load_dataset(name, subset=None, split=None):
        seen.append((name, subset, split))
        return FakeSplit(split)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    spec = DataSpec(name="google/boolq", label_field="answer")
    assert resolve_source(spec) == "hub"
    splits = load_splits(spec)
    assert seen == [("google/boolq", None, "train"), ("google/boolq", None, "validation")]
    assert splits.origin == "hub:google/boolq" and splits.train[0]["answer"] is True


def test_offline_names_fall_back_to_embedded_copies(monkeypatch):
    monkeypatch.setattr(loading, "hub_reachable", lambda: False)
    monkeypatch.setattr(loading, "converted_embedded", lambda name: f"/cache/{name}")
    assert resolve_model(ModelSpec(name=SMOL)).source == "embedded"
    assert resolve_source(DataSpec(name="google/boolq")) == "embedded"


def test_offline_without_embedded_copy_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(loading, "hub_reachable", lambda: False)
    with pytest.raises(ModelError, match="needs the Hugging Face hub, which is not reachable"):
        resolve_model(ModelSpec(name="facebook/opt-125m"))


def test_hub_reachability_honours_offline_env(monkeypatch):
    hub.hub_reachable.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_reachable() is False
    hub.hub_reachable.cache_clear()


def test_local_directory_model(tiny_model_dir):
    resolved = resolve_model(ModelSpec(name=str(tiny_model_dir)))
    assert resolved.source == "local"
    assert load_tokenizer(resolved).pad_token_id == 0


def test_local_directory_without_config(tmp_path):
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model(ModelSpec(name=str(tmp_path), source="local"))


def test_embedded_boolq_matches_the_hub_splits():
    from budgetft.data.embedded import boolq

    train, validation = boolq("train"), boolq("validation")
    assert (len(train), len(validation)) == (9427, 3270)
    assert sum(r["answer"] for r in validation) == 2033  # 62.2% true, as published
    assert set(train[0]) == {"question", "passage", "answer"} and isinstance(train[0]["answer"], bool)
    held_out = {r["question"].lower() for r in validation}
    assert not any(r["question"].lower() in held_out for r in train[:2000])


def test_parameter_count_from_weight_headers_matches_the_model(tiny_model_dir):
    from budgetft.models.speed import safetensors_parameters

    resolved = resolve_model(ModelSpec(name=str(tiny_model_dir)))
    model = load_model(resolved)
    # Tied input/output embeddings are stored once, as the loaded model counts them.
    assert safetensors_parameters(resolved.location) == sum(p.numel() for p in model.parameters())
