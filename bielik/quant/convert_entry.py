"""Entry point run in a subprocess: llama.cpp's ``convert_hf_to_gguf.py`` with bielik's tokenizers known.

The converter identifies a BPE tokenizer's pre-tokenizer by hashing the token ids of a fixed probe
string and refuses hashes it does not list ("BPE pre-tokenizer was not recognized"). Every tokenizer
bielik trains or adapts has a fresh vocabulary, so its hash is never listed although its
pre-tokenizer is a standard one. When (and only when) the converter does not recognise the hash, we
name the pre-tokenizer the tokenizer really uses, read from its ``tokenizer.json``
(:func:`bielik.quant.export.detect_pretokenizer`), so llama.cpp splits text exactly like HF does.

Usage: ``python -m bielik.quant.convert_entry <llama.cpp dir> <pre-tokenizer name> <converter args...>``
"""

from __future__ import annotations

import sys


def main() -> None:
    src, pre, *args = sys.argv[1:]
    sys.path.insert(0, src)
    sys.argv = [f"{src}/convert_hf_to_gguf.py", *args]
    import convert_hf_to_gguf  # noqa: F401 - puts the vendored gguf-py on sys.path, registers the models
    from conversion.base import TextModel, logger

    original = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if pre == "-":
                raise
            logger.info(f"bielik: unlisted tokenizer hash; using its declared pre-tokenizer {pre!r}")
            return pre

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
