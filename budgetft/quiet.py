"""Quieting the libraries: progress bars and advice that a user of this tool cannot act on."""

from __future__ import annotations

import os
import warnings

# Imported inside functions: transformers: importing this module must stay cheap (start-up time).


def quiet_libraries() -> None:
    """Hide library progress bars and advice that a user of this tool cannot act on."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
