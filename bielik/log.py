"""Logging: one format everywhere; under torchrun only rank 0 logs below WARNING.

Importing bielik configures nothing: the ``bielik`` logger gets a :class:`logging.NullHandler` (the
standard library convention), so a Python user's own logging setup decides what is shown. The
command-line entry point calls :func:`setup_logging` (through :func:`bielik.runtime.configure_process`).
"""

from __future__ import annotations

import logging
import os
import sys

logging.getLogger("bielik").addHandler(logging.NullHandler())


def setup_logging(level: str | int = "INFO") -> None:
    """Send ``bielik.*`` records to stderr in one format (entry points only: it is process-wide).

    Also quiets transformers' own progress bars and chatter, which would drown bielik's log lines.
    """
    rank = int(os.environ.get("RANK", "0"))
    handler = logging.StreamHandler(sys.stderr)
    prefix = f"[rank{rank}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("bielik")
    root.handlers[:] = [handler]
    root.setLevel(level if rank == 0 else "WARNING")
    root.propagate = False
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    else:  # read by transformers when first imported: `bielik --help` must not pay for importing it here
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def get_logger(name: str) -> logging.Logger:
    """The logger ``name`` (a ``bielik.*`` name, so the entry point's configuration applies)."""
    return logging.getLogger(name)
