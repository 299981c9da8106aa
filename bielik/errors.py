"""User-facing errors.

Anything a user can cause (a bad config key, a missing file, a malformed JSONL line, a truncated
safetensors shard) raises a :class:`BielikError` whose message starts with the file (and line, key or
tensor) and says what was expected: ``corpus.jsonl:2: not a valid JSON object (...)``. The CLI prints
it as one line ``error: <message>`` without a traceback and exits with status 2; any other exception
is a bug (one line, exit status 1). ``bielik --debug`` or ``BIELIK_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations


class BielikError(Exception):
    """An error caused by the user's input; its message is the whole story."""


class ConfigError(BielikError):
    """An invalid configuration (unknown key, wrong type, out-of-range value)."""


class DataError(BielikError):
    """Invalid or missing input data."""
