"""The scoring recipe an export's model card carries: Python that loads the export with
transformers (and peft, for an adapter) alone and gives each row the class probabilities
`budgetft predict` gives it.

It reads everything task-specific from budgetft_scoring.json, so the code depends only on the
model's shape (decoder or encoder) and the export's format (peft adapter or full model). It
scores one row at a time without padding, which makes it short and makes the soft-prompt
positions peft prepends irrelevant: the positions it reads are counted from the end.
"""

from __future__ import annotations

import json

ADAPTER, FULL = "peft_adapter", "full_model"
DECODER, ENCODER = "decoder", "encoder"
SCORING_FILE = "budgetft_scoring.json"


def recipe(architecture: str, export_format: str, fields: list[str], revision: str | None = None) -> str:
    auto = "AutoModelForCausalLM" if architecture == DECODER else "AutoModelForSequenceClassification"
    imports = ["import json", "", "import torch", f"from transformers import {auto}, AutoTokenizer"]
    extra = ', num_labels=len(meta["classes"])' if architecture == ENCODER else ""
    if export_format == ADAPTER:
        imports.append("from peft import PeftModel")
        rev = f", revision={revision!r}" if revision else ""
        load = [
            f'base = {auto}.from_pretrained(meta["base_model_path"]{rev}{extra}, dtype=torch.float32)',
            "model = PeftModel.from_pretrained(base, folder).eval()",
        ]
    else:
        load = [f"model = {auto}.from_pretrained(folder{extra}, dtype=torch.float32).eval()"]
    head = [
        *imports,
        "",
        'folder = "."  # this export\'s folder',
        f'meta = json.load(open(f"{{folder}}/{SCORING_FILE}"))',
        "tokenizer = AutoTokenizer.from_pretrained(folder)",
        *load,
        "",
        "",
        "def prompt_ids(row: dict) -> list:",
        '    text = meta["template"].format(**{k: str(v) for k, v in row.items()})',
        '    ids = tokenizer(text)["input_ids"]',
        "    if len(ids) > 1 and ids[-1] == tokenizer.eos_token_id:",
        "        ids = ids[:-1]  # budgetft never ends a prompt with EOS",
        "    return ids",
        "",
        "",
        "def fitted_ids(row: dict) -> list:",
        '    """The prompt\'s token ids; a row too long loses tokens from the end of its truncate field,',
        '    as budgetft shortened it in training."""',
        '    ids, budget, field = prompt_ids(row), meta["prompt_token_budget"], meta.get("truncate_field")',
        "    if len(ids) <= budget:",
        "        return ids",
        "    if not field:",
        '        raise ValueError(f"{len(ids)} prompt tokens, over the {budget} the model was trained with")',
        '    field_ids = tokenizer(str(row[field]), add_special_tokens=False)["input_ids"]',
        "    keep = len(field_ids) - (len(ids) - budget)",
        "    while keep > 0:  # re-tokenising at the cut can merge tokens: shave until it fits",
        "        ids = prompt_ids({**row, field: tokenizer.decode(field_ids[:keep], skip_special_tokens=True)})",
        "        if len(ids) <= budget:",
        "            return ids",
        "        keep -= max(1, len(ids) - budget)",
        '    return prompt_ids({**row, field: ""})',
        "",
        "",
        "def classify(row: dict) -> dict:",
        '    """Class probabilities of one row (a dict with the template\'s fields)."""',
        "    ids = fitted_ids(row)",
    ]
    if architecture == DECODER:
        body = [
            "    scores = []",
            '    for words in meta["class_token_ids"]:  # log P(label words | prompt), summed over their tokens',
            "        with torch.no_grad():",
            "            logits = model(input_ids=torch.tensor([ids + words])).logits[0, -len(words) - 1 : -1]",
            "        logprobs = logits.float().log_softmax(-1)",
            "        scores.append(sum(logprobs[j, w] for j, w in enumerate(words)))",
            '    scores = torch.stack(scores) + torch.tensor(meta["class_bias"] or [0.0] * len(scores))',
            '    return dict(zip(meta["classes"], scores.softmax(-1).tolist()))',
        ]
    else:
        body = [
            "    with torch.no_grad():",
            "        logits = model(input_ids=torch.tensor([ids])).logits[0]",
            '    return dict(zip(meta["classes"], logits.float().softmax(-1).tolist()))',
        ]
    example = json.dumps({f: "..." for f in fields})
    return "\n".join([*head, *body, "", "", f"print(classify({example}))", ""])
