"""User-facing errors.

Anything a user can cause (a bad config key, a missing file, a malformed JSONL line) raises a
:class:`BielikError` whose message names the file, line or key and what was expected. The CLI prints
it without a traceback and exits with status 2.
"""

from __future__ import annotations


class BielikError(Exception):
    """An error caused by the user's input; its message is the whole story."""


class ConfigError(BielikError):
    """An invalid configuration (unknown key, wrong type, out-of-range value)."""


class DataError(BielikError):
    """Invalid or missing input data."""
