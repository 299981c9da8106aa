"""Logging: one format everywhere; under torchrun only rank 0 logs below WARNING."""

from __future__ import annotations

import logging
import os
import sys

_CONFIGURED = False


def setup_logging(level: str | int = "INFO") -> None:
    global _CONFIGURED
    rank = int(os.environ.get("RANK", "0"))
    handler = logging.StreamHandler(sys.stderr)
    prefix = f"[rank{rank}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("bielik")
    root.handlers[:] = [handler]
    root.setLevel(level if rank == 0 else "WARNING")
    root.propagate = False
    _CONFIGURED = True
    try:  # transformers' own progress bars and chatter would drown our log lines
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def get_logger(name: str) -> logging.Logger:
    if not _CONFIGURED:
        setup_logging(os.environ.get("BIELIK_LOG_LEVEL", "INFO"))
    return logging.getLogger(name)
