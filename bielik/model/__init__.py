"""Models: presets and factory (here); depth up-scaling and merging come with later stages."""
