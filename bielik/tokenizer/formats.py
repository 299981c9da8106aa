"""Open a tokenizer from any of the formats people have: HF directories, SentencePiece models, GGUF.

``load_tokenizer(spec)`` accepts

* an HF tokenizer directory (``tokenizer.json`` / ``tokenizer_config.json``; never remote code);
* a SentencePiece model file (``tokenizer.model``, Mistral's ``*.model.v1`` / ``*.model.v3``);
* a GGUF file (llama.cpp's ``ggml-vocab-*.gguf`` or any model GGUF): SentencePiece-type vocabularies
  (``tokenizer.ggml.model = llama``) are rebuilt as a SentencePiece ``ModelProto`` from the stored
  pieces, scores and types and run by the ``sentencepiece`` library itself (this reproduces
  llama.cpp's own test vectors exactly, including leading spaces, where the HF GGUF converter
  differs); BPE vocabularies (``gpt2``) go through transformers' GGUF tokenizer converter;
* a Mistral tekken file (``tekken*.json``) through ``mistral-common``;
* a short name of a real tokenizer shipped inside a package (:data:`KNOWN`): ``mistral-v0.1`` and
  ``mistral-v3`` (SentencePiece models in the ``mistral-common`` wheel), ``llama2``, ``llama3``,
  ``qwen2``, ``gpt2`` (vocab GGUFs of the llama.cpp sources, see
  :func:`bielik.vendor.llama_cpp_source`).

Every loader returns a :class:`Tok` with ``encode(text)`` that adds **no** BOS/EOS (special tokens
are not part of a text's cost) and ``hf()``, an equivalent ``transformers`` tokenizer for stages
that need one (swap, merge).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bielik.errors import BielikError

# short name -> (where, file)
KNOWN: dict[str, tuple[str, str]] = {
    "mistral-v0.1": ("mistral_common", "tokenizer.model.v1"),
    "mistral-v3": ("mistral_common", "mistral_instruct_tokenizer_240323.model.v3"),
    "mistral-tekken": ("mistral_common", "tekken_240911.json"),
    "llama2": ("llama.cpp", "ggml-vocab-llama-spm.gguf"),
    "llama3": ("llama.cpp", "ggml-vocab-llama-bpe.gguf"),
    "qwen2": ("llama.cpp", "ggml-vocab-qwen2.gguf"),
    "gpt2": ("llama.cpp", "ggml-vocab-gpt-2.gguf"),
}


@dataclass
class Tok:
    name: str
    kind: str  # "hf", "sentencepiece", "gguf-spm", "gguf-bpe", "tekken"
    source: str
    vocab_size: int
    encode: Callable[[str], list[int]]
    _hf: Callable[[], Any] | None = field(default=None, repr=False)

    def hf(self):
        """An equivalent ``transformers`` tokenizer (PreTrainedTokenizerBase)."""
        if self._hf is None:
            raise BielikError(f"tokenizer {self.source} ({self.kind}) cannot be converted to an HF tokenizer")
        return self._hf()


def known_path(name: str) -> Path:
    """The file behind a short name of :data:`KNOWN` (fetching the llama.cpp sources if needed)."""
    where, fname = KNOWN[name]
    if where == "mistral_common":
        try:
            base = Path(str(resources.files("mistral_common") / "data"))
        except ModuleNotFoundError:
            raise BielikError(
                f"tokenizer '{name}' ships inside the mistral-common package: pip install mistral-common"
            ) from None
        path = base / fname
    else:
        from bielik.vendor import llama_cpp_source

        path = llama_cpp_source() / "models" / fname
    if not path.is_file():
        raise BielikError(f"tokenizer '{name}': {path} does not exist")
    return path


def _sentencepiece(path: Path, name: str, proto: bytes | None = None, kind: str = "sentencepiece") -> Tok:
    try:
        import sentencepiece as spm
    except ModuleNotFoundError:
        raise BielikError(
            "SentencePiece models need the sentencepiece package: pip install 'bielik-toolkit[tokenizer]'"
        ) from None
    try:
        sp = (
            spm.SentencePieceProcessor(model_proto=proto)
            if proto is not None
            else spm.SentencePieceProcessor(model_file=str(path))
        )
    except (RuntimeError, OSError) as exc:
        raise BielikError(f"{path} is not a SentencePiece model ({str(exc).splitlines()[0]})") from None

    def to_hf():
        """transformers' SentencePiece -> ``tokenizers`` BPE conversion (what Llama/Mistral hub repos ship)."""
        import tempfile

        from transformers import LlamaTokenizer
        from transformers.convert_slow_tokenizer import SentencePieceExtractor

        if proto is None:
            kw = SentencePieceExtractor(str(path)).extract(None)
        else:  # the extractor reads a file: give it the rebuilt proto in a temporary one
            with tempfile.TemporaryDirectory(prefix="bielik-spm-") as d:
                (Path(d) / "tokenizer.model").write_bytes(proto)
                kw = SentencePieceExtractor(str(Path(d) / "tokenizer.model")).extract(None)
        piece = lambda i: sp.id_to_piece(i) if 0 <= i < sp.vocab_size() else None  # noqa: E731
        return LlamaTokenizer(
            vocab=kw["vocab"],
            merges=kw["merges"],
            legacy=False,
            add_bos_token=False,
            unk_token=piece(sp.unk_id()),
            bos_token=piece(sp.bos_id()),
            eos_token=piece(sp.eos_id()),
        )

    return Tok(name, kind, str(path), sp.vocab_size(), lambda t: sp.encode(t), to_hf)


def _gguf_spm_proto(fields: dict[str, Any]) -> bytes:
    """A SentencePiece ``ModelProto`` (BPE, byte fallback) rebuilt from a GGUF ``llama`` vocabulary."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    tokens, scores, types = (
        fields["tokenizer.ggml.tokens"],
        fields["tokenizer.ggml.scores"],
        fields["tokenizer.ggml.token_type"],
    )
    for piece, score, typ in zip(tokens, scores, types):
        p = m.pieces.add()
        p.piece, p.score, p.type = piece, float(score), int(typ)  # GGUF token types use SentencePiece's numbering
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = any(int(t) == 6 for t in types)
    m.trainer_spec.unk_id = int(fields.get("tokenizer.ggml.unknown_token_id", 0))
    m.trainer_spec.bos_id = int(fields.get("tokenizer.ggml.bos_token_id", -1))
    m.trainer_spec.eos_id = int(fields.get("tokenizer.ggml.eos_token_id", -1))
    m.trainer_spec.pad_id = int(fields.get("tokenizer.ggml.padding_token_id", -1))
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = bool(fields.get("tokenizer.ggml.add_space_prefix", True))
    m.normalizer_spec.remove_extra_whitespaces = bool(fields.get("tokenizer.ggml.remove_extra_whitespaces", False))
    m.normalizer_spec.escape_whitespaces = True
    return m.SerializeToString()


def read_gguf_fields(path: Path) -> dict[str, Any]:
    """The metadata of a GGUF file, vocabulary and merges in full, no tensor data.

    transformers' GGUF metadata reader parses the Qwen2 vocabulary (152k tokens, 151k merges) in
    ~2 s; ``gguf.GGUFReader`` builds a numpy view per field part and needs ~11 s, so it is only the
    fallback when that (internal) transformers module moves.
    """
    try:
        from transformers.integrations.gguf.reader import read_gguf_metadata

        try:
            return read_gguf_metadata(str(path), ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"))[0]
        except (ValueError, KeyError, IndexError, struct.error, UnicodeDecodeError) as exc:
            raise BielikError(f"{path} is not a readable GGUF file ({exc})") from None
    except ImportError:
        pass
    try:
        import gguf
    except ModuleNotFoundError:
        raise BielikError("GGUF files need the gguf package: pip install 'bielik-toolkit[tokenizer]'") from None
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError/struct.error on foreign files
        raise BielikError(f"{path} is not a readable GGUF file ({exc})") from None
    return {
        k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.") or k == "general.architecture"
    }


def _gguf_bpe(path: Path):
    """transformers' GGUF tokenizer builder (pre-tokenizer regex by ``tokenizer.ggml.pre``) as a fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer, get_gguf_tokenizer
    except ImportError:  # the internal module moved: the public (slower) path
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    arch, tok_dict, tok_config = get_gguf_tokenizer(str(path))
    backend, _ = convert_gguf_tokenizer(arch, tok_dict)
    specials = {k: v for k, v in tok_config.items() if k.endswith("_token") and v is not None}
    hf = PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False, **specials)
    if tok_config.get("chat_template"):
        hf.chat_template = tok_config["chat_template"]
    return hf


def _gguf(path: Path, name: str) -> Tok:
    fields = read_gguf_fields(path)
    model = fields.get("tokenizer.ggml.model")
    if model == "llama":
        return _sentencepiece(path, name, proto=_gguf_spm_proto(fields), kind="gguf-spm")
    if model == "gpt2":
        hf = _gguf_bpe(path)
        return Tok(
            name, "gguf-bpe", str(path), len(hf), lambda t: hf(t, add_special_tokens=False).input_ids, lambda: hf
        )
    raise BielikError(
        f"{path}: GGUF tokenizer model '{model}' is not supported (supported: llama = SentencePiece, gpt2 = BPE)"
    )


def _tekken(path: Path, name: str) -> Tok:
    try:
        from mistral_common.tokens.tokenizers.tekken import Tekkenizer
    except ModuleNotFoundError:
        raise BielikError("tekken files need the mistral-common package: pip install mistral-common") from None
    tk = Tekkenizer.from_file(str(path))
    return Tok(name, "tekken", str(path), tk.n_words, lambda t: tk.encode(t, bos=False, eos=False))


def load_hf_tokenizer(path: str | Path):
    """Open an HF tokenizer directory as it was saved.

    transformers 5 trap: ``AutoTokenizer`` on a *model* directory picks the tokenizer class from
    ``config.json``'s ``model_type`` when ``tokenizer_config.json`` names the generic
    ``TokenizersBackend``; for ``qwen2`` that is ``Qwen2Tokenizer``, which rebuilds the pipeline
    with Qwen's pre-tokenizer and silently changes how a bielik tokenizer splits text. A tokenizer
    saved as ``TokenizersBackend``/``PreTrainedTokenizerFast`` is therefore loaded with that class.

    A tokenizer whose post-processor adds BOS but whose saved ``add_bos_token`` flag is missing (bielik
    tokenizers trained before the flag was written) gets the flag set, so that a later rebuild of the
    post-processor by transformers keeps the BOS (:func:`bielik.tokenizer.chat.sync_bos_flag`).
    """
    import json

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(path)
    cls = None
    conf = path / "tokenizer_config.json"
    if conf.is_file() and (path / "tokenizer.json").is_file():
        try:
            cls = json.loads(conf.read_text(encoding="utf-8")).get("tokenizer_class")
        except json.JSONDecodeError as exc:
            raise BielikError(f"{conf}: not valid JSON ({exc.msg})") from None
    try:
        if cls in ("TokenizersBackend", "PreTrainedTokenizerFast"):
            tok = PreTrainedTokenizerFast.from_pretrained(str(path))
        else:
            tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise BielikError(f"{path} is not an HF tokenizer directory ({str(exc).splitlines()[0]})") from None
    from bielik.tokenizer.chat import sync_bos_flag

    return sync_bos_flag(tok)


def tokenizer_style(tok) -> str:
    """``bytelevel`` (GPT-2/Qwen/Llama 3), ``metaspace`` (SentencePiece/Llama/Mistral) or ``plain``."""
    import json

    spec = json.loads(tok.backend_tokenizer.to_str())
    parts = json.dumps([spec.get("pre_tokenizer"), spec.get("decoder"), spec.get("normalizer")])
    if '"ByteLevel"' in parts:
        return "bytelevel"
    if '"Metaspace"' in parts or "\u2581" in parts:
        return "metaspace"
    return "plain"


def _hf_dir(path: Path, name: str) -> Tok:
    hf = load_hf_tokenizer(path)
    return Tok(name, "hf", str(path), len(hf), lambda t: hf(t, add_special_tokens=False).input_ids, lambda: hf)


def load_tokenizer(spec: str | Path, name: str | None = None) -> Tok:
    """Open ``spec`` (a known short name or a path, see the module docstring)."""
    spec_s = str(spec)
    if spec_s in KNOWN:
        path = known_path(spec_s)
        name = name or spec_s
    else:
        path = Path(spec_s)
        name = name or (path.name if path.name not in ("", ".") else spec_s)
    if path.is_dir():
        return _hf_dir(path, name)
    if not path.is_file():
        raise BielikError(
            f"tokenizer {spec_s} not found: give an HF tokenizer directory, a SentencePiece .model, a .gguf "
            f"file, a tekken .json or one of {', '.join(KNOWN)}"
        )
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"GGUF":
        return _gguf(path, name)
    if path.suffix == ".json":
        return _tekken(path, name)
    return _sentencepiece(path, name)
