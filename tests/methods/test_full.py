"""Full fine-tuning's train_embeddings setting: off, the token table stays as pretrained through
a real training step while every other weight moves; on (the default), the table trains too."""

import pytest
import torch

from budgetft import methods
from budgetft.methods import ApplyContext
from budgetft.spec import validate_job
from budgetft.report.fmt import settings


def _bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        max_position_embeddings=64, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config)


def _step(model) -> dict[str, torch.Tensor]:
    """One AdamW step over what the method left trainable; the weights before it."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    ids = torch.randint(1, 64, (4, 10))
    model(input_ids=ids, labels=torch.tensor([0, 1, 1, 0])).loss.backward()
    optimizer.step()
    return before


@pytest.mark.parametrize("train_embeddings", [True, False])
def test_the_token_table_trains_only_when_asked(train_embeddings):
    method = methods.get("full")
    model = method.apply(_bert(), method.config({"train_embeddings": train_embeddings}), ApplyContext())
    table = "bert.embeddings.word_embeddings.weight"
    assert dict(model.named_parameters())[table].requires_grad is train_embeddings
    before = _step(model)
    after = dict(model.named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert (table in moved) is train_embeddings
    # Everything else trains either way: positions, blocks, pooler, head.
    assert set(before) - {table} <= moved


def test_it_is_on_by_default_and_a_job_may_turn_it_off(tiny_job_data):
    method = methods.get("full")
    assert method.config({})["train_embeddings"] is True
    data = tiny_job_data
    data["methods"] = {"full": {"learning_rate": 5e-5, "train_embeddings": False}}
    job = validate_job(data)
    assert job.space_for("full")["train_embeddings"] is False
    # The report says it in words a reader can take in.
    assert settings({"learning_rate": 5e-5, "train_embeddings": False}) == "lr=5e-05 train_embeddings=no"
