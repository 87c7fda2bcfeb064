"""Scoring: every prediction is a valid class, read off the model's scores for each class.

- verbalizer: a decoder's label-word log-probabilities (and the training losses on them)
- head: an encoder's classification head, with the same functions
- rows: scoring rows in batches, and the metrics of a split (`evaluate`)
- baselines: the majority class and the untuned model (zero-shot)
- class_bias: a per-class bias fitted on training rows before training starts
"""
