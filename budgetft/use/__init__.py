"""Using what a run bought: score new rows with its winner (`budgetft predict`) and hand the
winner to the Hugging Face libraries with its proof (`budgetft export`).

    winner      which trial a run's use defaults to, and the checks on a named one
    bridge      the one place this package reaches into training code (scoring, loading weights)
    scoring_task the job's tokenizer and label words, without its data or weights
    inputs      rows to score: a file of the job's fields, or standard input
    predict     class probabilities of each row, and their JSON / JSONL / CSV forms
    export      the export directory; full_model turns our methods into plain transformers models;
    recipe      the few lines that score with the export and nothing but transformers and peft;
    model_card  its README.md

Nothing here imports torch, transformers or peft at module level.
"""


class UseError(ValueError):
    """A run, trial, input or export target that cannot be used. The message names the problem
    and the fix; it is raised before any model weights are loaded."""
