"""Library notices kept out of chapter output: engine logs go to the evidence file, not the cell output."""
from __future__ import annotations

import logging


def quiet_logs() -> None:
    """Keep executed notebooks readable: engine logs go to the evidence file, not the cell output;
    library notices that say nothing about this run (tqdm's missing ipywidgets, transformers' config
    advice) are dropped."""
    import contextlib
    import warnings

    for name in ("vllm", "transformers", "torch", "urllib3", "httpx", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="tqdm")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    with contextlib.suppress(Exception):
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
