"""Corpus curation (RECIPE.md §1): cleaning, PII anonymisation, dedup, stylometric features, the
HIGH/MEDIUM/LOW quality classifier, and the datatrove pipeline that runs them at scale."""
