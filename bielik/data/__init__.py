"""Corpus I/O, mixing and packing into token shards (curation steps join here later)."""
