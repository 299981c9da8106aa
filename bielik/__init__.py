"""bielik: the Bielik recipe for language-specialised LLMs, as one tested toolkit."""

__version__ = "0.1.0"
