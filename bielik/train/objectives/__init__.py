"""Objectives: a batch in, a summed loss and summed metrics out (see :class:`Objective`)."""

from bielik.train.objectives.base import Objective, ObjectiveOutput
from bielik.train.objectives.causal_lm import CausalLM

__all__ = ["Objective", "ObjectiveOutput", "CausalLM"]
