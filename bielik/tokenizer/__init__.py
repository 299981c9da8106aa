"""Tokenizers: training (here), efficiency statistics, merging and swapping come with later stages."""
