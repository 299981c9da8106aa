"""Dialogues -> tokens with a loss mask -> packed fixed-length rows for SFT.

Rendering (:func:`encode_dialogue`) goes through the tokenizer's chat template,
``apply_chat_template(..., return_assistant_tokens_mask=True)``: the template's ``{% generation %}``
blocks decide what is trained (bielik's ChatML: assistant content and its ``<|im_end|>``; see
:mod:`bielik.tokenizer.chat`, whose :func:`~bielik.tokenizer.chat.ensure_chat_template` the caller
applies first). The template writes the one BOS; nothing is added on top.

Packing (:func:`pack_dialogues`) puts several whole dialogues in a row of ``seq_len`` tokens,
*best-fit decreasing* (longest first, each into the row whose free space fits it most tightly;
ties by input order, so the result is deterministic; it packs as tightly as first-fit decreasing
and needs one ``bisect`` per dialogue instead of a scan of all rows). A dialogue never spans two
rows. One longer than ``seq_len`` is truncated to its first ``seq_len`` tokens (``overflow=
"truncate"``; dropped if no trained token is left) or dropped (``overflow="drop"``); both counted.

Per row:

* ``input_ids`` (T,): the dialogues, then ``pad_id`` up to T;
* ``labels`` (T,): ``input_ids`` where trained, else ``-100``. **Not shifted**: the objective
  predicts ``labels[t+1]`` from position t. The first token of every dialogue has label ``-100``
  (it is BOS anyway), so no prediction crosses from one dialogue into the next;
* ``position_ids`` (T,): 0, 1, ... restarting at every dialogue. With ``attention_mask=None`` and
  no KV cache, transformers 5 (``masking_utils.find_packed_sequence_indices``) reads a restart as a
  new sequence and builds a block-diagonal causal mask, so no attention crosses a boundary either.
  The padding tail restarts at 0 too: it is a separate "document" no real token attends to;
* ``loss_weights`` (T,) float32: the dialogue's weight at trained positions, 0 elsewhere;
* ``token_mask`` (T,) bool: not padding; and ``n_dialogues`` per row.
"""

from __future__ import annotations

import bisect
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from bielik.artifacts import atomic_write_bytes
from bielik.data.chat import Dialogue
from bielik.errors import DataError
from bielik.log import get_logger

log = get_logger(__name__)

IGNORE_INDEX = -100
FIELDS = ("input_ids", "labels", "position_ids", "loss_weights", "token_mask")


class UnusableDialogue(DataError):
    """A dialogue whose content cannot be rendered safely; :func:`encode_dialogues` skips and counts it."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class EncodedDialogue:
    input_ids: np.ndarray  # (n,) int32
    loss_mask: np.ndarray  # (n,) bool: trained tokens
    weight: float = 1.0
    key: str = ""


def _control_tokens(tokenizer) -> list[str]:
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    special.update(
        str(t) for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if getattr(t, "special", False)
    )
    return sorted(t for t in special if t)


def encode_dialogue(
    tokenizer, messages: Sequence[dict[str, str]], where: str = "dialogue"
) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids int32, loss_mask bool) of one dialogue rendered by the tokenizer's chat template.

    Raises :class:`UnusableDialogue` (naming ``where``) when a message contains a control token as
    text (it would be encoded as the control token itself, e.g. a user turn could close the
    assistant's) or the rendering holds more than one BOS, and :class:`DataError` when the template
    marks no assistant token (it lacks ``{% generation %}`` markers: apply
    :func:`bielik.tokenizer.chat.ensure_chat_template`).
    """
    controls = _control_tokens(tokenizer)
    for i, msg in enumerate(messages):
        hit = next((t for t in controls if t in msg["content"]), None)
        if hit is not None:
            raise UnusableDialogue(
                "control_token_in_content",
                f"{where}: messages[{i}].content: contains the control "
                f"token {hit!r} as text; expected plain text (it would be encoded as the control token)",
            )
    enc = tokenizer.apply_chat_template(
        list(messages), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = np.asarray(enc["input_ids"], dtype=np.int32)
    mask = np.asarray(enc["assistant_masks"], dtype=bool)
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and int((ids == bos).sum()) > 1:
        raise UnusableDialogue(
            "several_bos",
            f"{where}: the rendered dialogue holds {int((ids == bos).sum())} BOS tokens; "
            "expected one (the chat template writes BOS, so the text must be tokenized without special tokens)",
        )
    if not mask.any():
        raise DataError(
            f"{where}: the chat template marked no assistant token; expected a template with "
            "{% generation %} markers (bielik.tokenizer.chat.ensure_chat_template installs one)"
        )
    mask[0] = False  # a dialogue's first token is never a target (module docstring)
    return ids, mask


def encode_dialogues(
    tokenizer, dialogues: Iterable[Dialogue], skip_invalid: bool = True, assistant_only: bool = True
) -> tuple[list[EncodedDialogue], dict[str, int]]:
    """Encode many dialogues; with ``skip_invalid`` an :class:`UnusableDialogue` is skipped and counted
    by reason (the first few are logged), otherwise it propagates. A template without generation
    markers is always an error. ``assistant_only=False`` marks every token but the first as trained
    (the masking ablation)."""
    out: list[EncodedDialogue] = []
    skipped: dict[str, int] = {}
    for d in dialogues:
        try:
            ids, mask = encode_dialogue(tokenizer, d.messages, d.where)
        except UnusableDialogue as exc:
            if not skip_invalid:
                raise
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
            if sum(skipped.values()) <= 3:
                log.warning("skipping a dialogue: %s", exc)
            continue
        if not assistant_only:
            mask = np.ones_like(mask)
            mask[0] = False
        out.append(EncodedDialogue(ids, mask, d.weight, d.key))
    if skipped:
        log.warning("skipped %d dialogue(s): %s", sum(skipped.values()), skipped)
    return out, skipped


@dataclass
class ChatRows:
    """Packed SFT rows (see the module docstring); arrays have shape (rows, seq_len) unless noted."""

    input_ids: np.ndarray
    labels: np.ndarray
    position_ids: np.ndarray
    loss_weights: np.ndarray
    token_mask: np.ndarray
    n_dialogues: np.ndarray  # (rows,)
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[1])

    def rows(self, idx: np.ndarray | Sequence[int]) -> dict[str, np.ndarray]:
        """The fields of rows ``idx`` (input_ids/labels/position_ids as int64, ready for torch)."""
        idx = np.asarray(idx, dtype=np.int64)
        out = {k: getattr(self, k)[idx] for k in FIELDS}
        for k in ("input_ids", "labels", "position_ids"):
            out[k] = out[k].astype(np.int64)
        return out

    def save(self, path: str | Path) -> None:
        """One ``.npz`` file, written atomically; :meth:`load` reads it back."""
        buf = io.BytesIO()
        arrays = {k: getattr(self, k) for k in (*FIELDS, "n_dialogues")}
        np.savez(buf, stats=np.array(json.dumps(self.stats)), **arrays)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> ChatRows:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"packed chat rows {path} do not exist")
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (*FIELDS, "n_dialogues", "stats") if k not in z]
            if missing:
                raise DataError(f"{path}: not a packed chat file (missing {missing})")
            arrays = {k: z[k] for k in (*FIELDS, "n_dialogues")}
            stats = json.loads(str(z["stats"]))
        return cls(**arrays, stats=stats)


def _fit(items: list[EncodedDialogue], seq_len: int, overflow: str) -> tuple[list[EncodedDialogue], dict[str, int]]:
    kept, counts = [], {"truncated": 0, "dropped_too_long": 0, "dropped_truncated_untrained": 0}
    for e in items:
        if len(e.input_ids) > seq_len:
            if overflow == "drop":
                counts["dropped_too_long"] += 1
                continue
            counts["truncated"] += 1
            e = EncodedDialogue(e.input_ids[:seq_len], e.loss_mask[:seq_len], e.weight, e.key)
            if not e.loss_mask.any():
                counts["dropped_truncated_untrained"] += 1
                continue
        kept.append(e)
    return kept, counts


def _best_fit_decreasing(lengths: list[int], seq_len: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free tokens, row), sorted
    for i in order:
        k = bisect.bisect_left(free, (lengths[i], -1))
        if k < len(free):
            room, r = free.pop(k)
        else:
            room, r = seq_len, len(rows)
            rows.append([])
        rows[r].append(i)
        if room - lengths[i] > 0:
            bisect.insort(free, (room - lengths[i], r))
    return rows


def pack_dialogues(
    encoded: Sequence[EncodedDialogue],
    seq_len: int,
    pad_id: int,
    overflow: Literal["truncate", "drop"] = "truncate",
    pack: bool = True,
) -> ChatRows:
    """Pack encoded dialogues into rows of ``seq_len`` tokens (see the module docstring); with
    ``pack=False`` every dialogue gets a row of its own (in input order), padded."""
    if overflow not in ("truncate", "drop"):
        raise DataError(f"overflow: expected 'truncate' or 'drop', got {overflow!r}")
    items, counts = _fit(list(encoded), seq_len, overflow)
    if not items:
        raise DataError(f"no dialogue left to pack into rows of {seq_len} tokens ({len(encoded)} given, {counts})")
    rows = (
        _best_fit_decreasing([len(e.input_ids) for e in items], seq_len) if pack else [[i] for i in range(len(items))]
    )
    n = len(rows)
    ids = np.full((n, seq_len), pad_id, dtype=np.int32)
    labels = np.full((n, seq_len), IGNORE_INDEX, dtype=np.int32)
    pos = np.zeros((n, seq_len), dtype=np.int32)
    weights = np.zeros((n, seq_len), dtype=np.float32)
    token_mask = np.zeros((n, seq_len), dtype=bool)
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            e = items[i]
            end = at + len(e.input_ids)
            trained = e.loss_mask.copy()
            trained[0] = False
            ids[r, at:end] = e.input_ids
            labels[r, at:end] = np.where(trained, e.input_ids, IGNORE_INDEX)
            pos[r, at:end] = np.arange(end - at)
            weights[r, at:end] = np.where(trained, e.weight, 0.0)
            token_mask[r, at:end] = True
            at = end
        pos[r, at:] = np.arange(seq_len - at)  # the padding is a segment of its own
    stats = {
        "dialogues_in": len(encoded),
        "dialogues_packed": len(items),
        **counts,
        "rows": n,
        "seq_len": seq_len,
        "tokens": int(token_mask.sum()),
        "trained_tokens": int((labels != IGNORE_INDEX).sum()),
        "fill": round(float(token_mask.mean()), 4),
        "dialogues_per_row": round(len(items) / n, 3),
    }
    if counts["truncated"] or counts["dropped_too_long"]:
        log.warning(
            "%d dialogue(s) longer than %d tokens: %d truncated (%d of them then dropped: no trained token "
            "left), %d dropped",
            counts["truncated"] + counts["dropped_too_long"],
            seq_len,
            counts["truncated"],
            counts["dropped_truncated_untrained"],
            counts["dropped_too_long"],
        )
    log.info(
        "packed %d dialogues into %d rows of %d tokens (%.1f%% filled, %.2f per row)",
        len(items),
        n,
        seq_len,
        100 * stats["fill"],
        stats["dialogues_per_row"],
    )
    return ChatRows(ids, labels, pos, weights, token_mask, np.array([len(m) for m in rows], dtype=np.int32), stats)


@dataclass
class SFTData:
    """What an SFT run trains and validates on: packed rows and a summary for ``data.json``."""

    train: ChatRows
    val: ChatRows | None
    stats: dict


def build_sft_data(
    tokenizer,
    inputs: Iterable[str | Path],
    seq_len: int,
    val_fraction: float = 0.02,
    seed: int = 0,
    quality_weights: dict[str, float] | None = None,
    default_quality: str | None = None,
    overflow: Literal["truncate", "drop"] = "truncate",
    assistant_only: bool = True,
    pack: bool = True,
    weighting: bool = True,
    max_dialogues: int | None = None,
) -> SFTData:
    """Read and validate every dialogue, sample ``max_dialogues`` (seeded), split off the validation
    dialogues by hashed id (:func:`bielik.data.chat.split_dialogues`), encode and pack both parts.

    ``assistant_only=False`` trains every token but each dialogue's first; ``pack=False`` puts one
    dialogue per (padded) row; ``weighting=False`` gives every dialogue weight 1. The tokenizer must
    render masks (:func:`bielik.tokenizer.chat.ensure_chat_template`). Rows are padded with its PAD
    token (EOS when it has none: padding is neither attended to nor trained).
    """
    import random

    from bielik.data.chat import read_dialogues, split_dialogues

    inputs = [str(i) for i in inputs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise DataError("the tokenizer has neither a PAD nor an EOS token to pad rows with")
    dialogues = list(read_dialogues(inputs, quality_weights, default_quality))
    if max_dialogues is not None and len(dialogues) > max_dialogues:
        keep = sorted(random.Random(seed).sample(range(len(dialogues)), max_dialogues))
        dialogues = [dialogues[i] for i in keep]
    train, val = split_dialogues(dialogues, val_fraction, seed)
    if not train:
        raise DataError(f"no training dialogues in {inputs} (all {len(val)} held out: lower val_fraction)")
    stats: dict = {
        "inputs": inputs,
        "train_dialogues": len(train),
        "val_dialogues": len(val),
        "weights": _weight_counts(train),
    }
    parts = []
    for name, part in (("train", train), ("val", val)):
        rows = None
        if part:
            encoded, skipped = encode_dialogues(tokenizer, part, assistant_only=assistant_only)
            if not weighting:
                encoded = [EncodedDialogue(e.input_ids, e.loss_mask, 1.0, e.key) for e in encoded]
            fits = [
                e
                for e in encoded
                if len(e.input_ids) <= seq_len or (overflow == "truncate" and e.loss_mask[:seq_len].any())
            ]
            if fits or name == "train":  # packing nothing is an error for training, "no validation" otherwise
                rows = pack_dialogues(encoded, seq_len, pad, overflow, pack=pack)
            else:
                log.warning("no validation dialogue fits in %d tokens: validating on nothing", seq_len)
            stats[name] = {**(rows.stats if rows is not None else {}), "skipped": skipped}
        parts.append(rows)
    return SFTData(parts[0], parts[1], stats)


def _weight_counts(dialogues: Sequence[Dialogue]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in dialogues:
        counts[str(d.weight)] = counts.get(str(d.weight), 0) + 1
    return dict(sorted(counts.items()))
