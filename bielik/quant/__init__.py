"""Quantisation and deployment: GGUF export, importance matrices, llama.cpp quantisation, the
KLD/Δp comparison report and inference speed (RECIPE.md §8, §9.4)."""
