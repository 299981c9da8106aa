"""Reading GGUF files with gguf-py: validation, metadata, sizes and bits per weight.

A GGUF file is a header (magic ``GGUF``, version, tensor and key-value counts), the key-value
metadata, the tensor infos (name, shape, type, offset) and the aligned tensor data. gguf-py's
``GGUFReader`` memory-maps the file; we turn every way a file can be broken (not a GGUF, truncated,
tensor data past the end) into a :class:`BielikError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bielik.errors import BielikError

GGUF_MAGIC = b"GGUF"


@dataclass
class GGUFInfo:
    path: Path
    architecture: str
    file_bytes: int
    n_params: int
    tensor_bytes: int
    tensor_types: dict[str, int] = field(default_factory=dict)  # type name -> number of tensors
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def gib(self) -> float:
        return self.file_bytes / 2**30

    @property
    def bits_per_weight(self) -> float:
        """Bits per weight of the tensor data (metadata excluded), as llama.cpp reports a model's BPW."""
        return 8 * self.tensor_bytes / max(self.n_params, 1)

    @property
    def type_name(self) -> str:
        """llama.cpp's name of ``general.file_type`` (``Q4_K_M``, ``ALL_F32``, ...), ``?`` when absent or unknown."""
        import gguf

        try:
            return gguf.LlamaFileType(int(self.metadata.get("general.file_type"))).name.removeprefix("MOSTLY_")
        except (TypeError, ValueError):
            return "?"


def _field_value(field) -> object:
    from gguf import GGUFValueType

    if not field.types:
        return None
    vtype = field.types[0]
    if vtype == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    if vtype == GGUFValueType.ARRAY:
        return f"<array of {len(field.data)}>"
    value = field.parts[field.data[0]]
    return value.tolist()[0] if hasattr(value, "tolist") else value


def read_gguf(path: str | Path) -> GGUFInfo:
    """Open and validate a GGUF file; raise :class:`BielikError` when it is not a complete GGUF."""
    path = Path(path)
    if not path.is_file():
        raise BielikError(f"GGUF file {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise BielikError(f"{path} is not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise BielikError("reading GGUF files needs the gguf package: pip install 'bielik-toolkit[quant]'") from None
    try:
        reader = GGUFReader(path, "r")
    except Exception as exc:  # noqa: BLE001 - gguf-py raises ValueError/IndexError/struct errors on damage
        raise BielikError(f"{path} is a damaged or truncated GGUF file ({type(exc).__name__}: {exc})") from None
    n_params, n_bytes, types = 0, 0, {}
    for t in reader.tensors:
        end = int(t.data_offset) + int(t.n_bytes)
        if end > size:
            raise BielikError(
                f"{path} is truncated: tensor {t.name} ends at byte {end:,} but the file has {size:,} bytes"
            )
        n_params += int(t.n_elements)
        n_bytes += int(t.n_bytes)
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    meta = {}
    for name, f in reader.fields.items():
        if (
            name.startswith("GGUF.")
            or name.startswith("tokenizer.ggml.tokens")
            or name.startswith("tokenizer.ggml.merges")
        ):
            continue
        try:
            meta[name] = _field_value(f)
        except Exception:  # noqa: BLE001 - an unreadable optional field is reported, not fatal
            meta[name] = "<unreadable>"
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise BielikError(f"{path} has no general.architecture key: not a llama.cpp model file")
    return GGUFInfo(
        path=path,
        architecture=arch,
        file_bytes=size,
        n_params=n_params,
        tensor_bytes=n_bytes,
        tensor_types=types,
        metadata=meta,
    )


def resolve_gguf(path: str | Path, what: str = "model") -> Path:
    """A GGUF file given as a file or as a stage directory holding exactly one ``*.gguf``."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise BielikError(f"{what}: directory {path} holds no .gguf file")
        raise BielikError(
            f"{what}: directory {path} holds {len(found)} .gguf files; name one of them: "
            + ", ".join(f.name for f in found)
        )
    raise BielikError(f"{what}: {path} does not exist")
