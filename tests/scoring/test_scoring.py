"""The verbalizer: class scores equal hand-computed label-word log-probabilities."""

import numpy as np
import pytest
import torch

from budgetft.scoring.verbalizer import class_cross_entropy, class_scores, label_word_nll


@pytest.fixture
def model_and_tok(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def manual_logprob(model, prompt: list[int], words: list[int], offset_model=None) -> float:
    """log p(words | prompt) from one unpadded forward pass over prompt + words."""
    ids = torch.tensor([prompt + words])
    with torch.no_grad():
        logits = (offset_model or model)(input_ids=ids).logits[0]
    logits = logits[logits.shape[0] - ids.shape[1] :]  # drop soft-prompt positions if any
    logp = torch.log_softmax(logits.float(), dim=-1)
    return float(sum(logp[len(prompt) + j - 1, tok] for j, tok in enumerate(words)))


def test_multi_token_label_words_match_hand_computation(model_and_tok):
    model, tok = model_and_tok
    classes = [tok(" very yes", add_special_tokens=False).input_ids, tok(" no", add_special_tokens=False).input_ids, tok(" maybe yes no", add_special_tokens=False).input_ids]
    assert [len(c) for c in classes] == [2, 1, 3]
    prompts = [tok("passage : sky alpha . answer :").input_ids, tok("sea").input_ids, tok("the cat sits on the dog under the sea ?").input_ids]
    with torch.no_grad():
        scores = class_scores(model, [np.array(p) for p in prompts], classes, pad_id=0)
    for i, p in enumerate(prompts):
        for c, words in enumerate(classes):
            assert scores[i, c].item() == pytest.approx(manual_logprob(model, p, words), abs=1e-4)


def test_single_token_fast_path_matches_hand_computation(model_and_tok):
    model, tok = model_and_tok
    classes = [[tok.convert_tokens_to_ids("yes")], [tok.convert_tokens_to_ids("no")]]
    prompts = [tok("sky alpha answer :").input_ids, tok("beta").input_ids]
    with torch.no_grad():
        scores = class_scores(model, [np.array(p) for p in prompts], classes, pad_id=0)
    for i, p in enumerate(prompts):
        for c, words in enumerate(classes):
            assert scores[i, c].item() == pytest.approx(manual_logprob(model, p, words), abs=1e-4)


def test_training_loss_is_the_gold_label_words_nll(model_and_tok):
    model, tok = model_and_tok
    classes = [tok(" very yes", add_special_tokens=False).input_ids, tok(" no", add_special_tokens=False).input_ids]
    prompts = [tok("sky alpha").input_ids, tok("beta sea sea").input_ids]
    with torch.no_grad():
        nll, n_tokens = label_word_nll(model, [np.array(p) for p in prompts], [0, 1], classes, pad_id=0)
    expected = -(manual_logprob(model, prompts[0], classes[0]) + manual_logprob(model, prompts[1], classes[1]))
    assert n_tokens == 3 and nll.item() == pytest.approx(expected, abs=1e-4)


def test_soft_prompt_offset_is_respected(model_and_tok):
    """With prompt tuning, peft prepends virtual positions to the logits; scores must skip them."""
    from budgetft.methods import ApplyContext, get
    from budgetft.scoring.rows import virtual_token_offset

    model, tok = model_and_tok
    peft_model = get("prompt_tuning").apply(model, {"num_virtual_tokens": 4, "learning_rate": 0.1}, ApplyContext(tok, "answer yes"))
    peft_model.eval()
    assert virtual_token_offset(peft_model) == 4
    classes = [tok(" very yes", add_special_tokens=False).input_ids, tok(" no", add_special_tokens=False).input_ids]
    prompt = tok("sky alpha answer :").input_ids
    with torch.no_grad():
        scores = class_scores(peft_model, [np.array(prompt)], classes, pad_id=0, offset=4)
    for c, words in enumerate(classes):
        assert scores[0, c].item() == pytest.approx(manual_logprob(model, prompt, words, offset_model=peft_model), abs=1e-4)


def test_class_cross_entropy_is_softmax_over_label_word_scores(model_and_tok):
    model, tok = model_and_tok
    classes = [tok(" very yes", add_special_tokens=False).input_ids, tok(" no", add_special_tokens=False).input_ids]
    prompts = [tok("sky alpha").input_ids, tok("beta sea sea").input_ids]
    with torch.no_grad():
        loss, rows = class_cross_entropy(model, [np.array(p) for p in prompts], [0, 1], classes, pad_id=0)
    expected = 0.0
    for p, gold in zip(prompts, [0, 1]):
        scores = torch.tensor([manual_logprob(model, p, words) for words in classes])
        expected += -(scores[gold] - torch.logsumexp(scores, 0)).item()
    assert rows == 2 and loss.item() == pytest.approx(expected, abs=1e-4)
