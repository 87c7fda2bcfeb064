"""Shared fixtures: a tiny random Llama with a word-level tokenizer, and small data files.

Everything is built in the test session (seconds), never downloaded.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network
# Exact fp32 arithmetic for the tiny models (a CPU with native bf16 would otherwise autocast);
# tests of the bf16 path set it themselves.
os.environ.setdefault("BUDGETFT_PRECISION", "fp32")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = (
    "alpha beta gamma delta the a is it there passage question answer yes no maybe very "
    "sky sea blue green red cat dog runs sits on under ? : . ###"
).split()


def make_rows(n: int, seed: int = 0, share_true: float = 0.6) -> list[dict]:
    """A learnable rule: the answer is yes when the passage mentions 'alpha', no for 'beta'."""
    rng = random.Random(seed)
    filler = ["the", "sky", "sea", "blue", "green", "red", "cat", "dog", "runs", "sits", "on", "under", "a"]
    rows = []
    for _ in range(n):
        label = rng.random() < share_true
        words = [rng.choice(filler) for _ in range(rng.randint(3, 12))]
        words.insert(rng.randint(0, len(words)), "alpha" if label else "beta")
        rows.append({"passage": " ".join(words), "question": "is it there", "label": label})
    return rows


def load_script(relative: str):
    """A script of the repository that is not part of the package (benchmarks/, scripts/), as a
    module, for tests of the functions it defines."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def build_tiny_model(folder: Path) -> Path:
    """A 2-layer random Llama (~40k parameters) and a word-level tokenizer, saved to folder."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[EOS]", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    # Like BERT-style tokenizers, drop control characters: some label words tokenize to nothing.
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=0, eos_token_id=2, bos_token_id=2, tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BUDGETFT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def real_cache(monkeypatch):
    """The user's cache (or BUDGETFT_TEST_CACHE): the embedded SmolLM2's converted copy (~25-45 s
    to make) is made once per machine and shared by every test that loads it."""
    monkeypatch.delenv("BUDGETFT_CACHE", raising=False)
    if os.environ.get("BUDGETFT_TEST_CACHE"):
        monkeypatch.setenv("BUDGETFT_CACHE", os.environ["BUDGETFT_TEST_CACHE"])


@pytest.fixture
def tiny_job_data(tiny_model_dir, tmp_path) -> dict:
    return tiny_job_dict(tiny_model_dir, tmp_path)


def tiny_job_dict(tiny_model_dir: Path, tmp_path: Path) -> dict:
    """A job (as a dict) on the tiny model with separate train and validation files."""
    train = write_jsonl(tmp_path / "train.jsonl", make_rows(200, seed=1))
    valid = write_jsonl(tmp_path / "valid.jsonl", make_rows(60, seed=2))
    return {
        "name": "tiny",
        "model": {"name": str(tiny_model_dir)},
        "data": {"name": "tiny", "files": {"train": str(train), "validation": str(valid)}, "label_field": "label"},
        "prompt": {
            "template": "passage : {passage} . question : {question} ? answer :",
            "labels": {"true": " yes", "false": " no"},
            "truncate_field": "passage",
            "max_length": 64,
        },
        "train": {"batch_size": 8, "max_steps": 30, "eval_every": 10},
        "eval": {"limit": 60, "batch_size": 16},
        "methods": {"lora": {}},
        "seed": 0,
    }


@pytest.fixture
def tiny_job_file(tiny_job_data, tmp_path) -> Path:
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_job_data))
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, above all on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
