"""Minitron compression (RECIPE §7): activation importance, candidate shapes, structured pruning, logit distillation.

Stages: ``compress.importance`` (:mod:`.importance`), ``compress.plan`` (:mod:`.plan`), ``compress.prune``
(:mod:`.prune`), ``compress.distill`` (:mod:`.distill`, objective :mod:`bielik.train.objectives.kd`).
Guide: docs/compression.md.
"""
