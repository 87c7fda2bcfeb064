"""budgetft: the best fine-tuned model a fixed number of dollars can buy, with proof."""

__version__ = "0.1.0"
