"""A job's dropout setting (TrainSpec.dropout) reaches every probability a model reads while it
trains, and only the model's own: a method's dropout stays the method's."""

import torch

from budgetft.models.dropout import set_dropout


def _bert():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(config)


def _probabilities(model) -> set[float]:
    return {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}


def test_every_dropout_module_and_the_config_take_the_jobs_probability():
    model = _bert()
    assert _probabilities(model) == {0.1}
    changed = set_dropout(model, 0.0)
    # embeddings, classifier, and per layer: attention's, the attention output's, the block output's
    assert changed == 2 + 3 * 2
    assert _probabilities(model) == {0.0}
    assert model.config.hidden_dropout_prob == 0.0 and model.config.attention_probs_dropout_prob == 0.0
    assert set_dropout(model, 0.0) == 0  # already so: nothing changes


def test_training_draws_no_mask_without_dropout():
    """In training mode the same input gives the same output once dropout is off (it differs
    while the model's 0.1 is on)."""
    model = _bert().train()
    ids = torch.randint(1, 64, (2, 12))
    torch.manual_seed(0)
    assert not torch.allclose(model(input_ids=ids).logits, model(input_ids=ids).logits)
    set_dropout(model, 0.0)
    assert torch.allclose(model(input_ids=ids).logits, model(input_ids=ids).logits)


def test_an_attention_layers_float_probability_is_set_too():
    """Llama-style attention reads a float attribute, not a Dropout module."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=64, attention_dropout=0.2)
    model = LlamaForCausalLM(config)
    assert set_dropout(model, 0.05) == 2  # one per layer
    assert all(layer.self_attn.attention_dropout == 0.05 for layer in model.model.layers)
    assert model.config.attention_dropout == 0.05
