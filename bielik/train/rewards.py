"""Verifiable rewards for GRPO: small named functions of a completion and its task's reference answer.

A reward is a function ``fn(sample: RewardSample) -> float`` registered under a name
(:func:`reward`); the GRPO stage's ``rewards`` config maps names to weights, and the reward of a
completion is Σ_k w_k·r_k. Every named reward is also logged on its own (``reward_<name>``). Add
your own in a module of yours and list it in ``reward_modules`` (it is imported before training)::

    from bielik.train.rewards import reward

    @reward("short")
    def short(sample):          # 1 for answers of at most 40 characters
        return float(len(sample.text) <= 40)

Shipped rewards:

* ``accuracy``: 1 when the completion's final answer (:func:`bielik.data.numbers.final_answer`) equals the reference
  as a number, else 0.
* ``format``: 1 when the completion states its answer after a marker (``The answer is``,
  ``Odpowiedź:``, ``####``, ``\\boxed{}``, ...) with a number after it *and* it ended on its own
  (a stop token, not the length limit), else 0.

Answers are read by :mod:`bielik.data.numbers` (Polish and English number formats, fractions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bielik.data.numbers import final_answer, has_marked_answer, parse_reference
from bielik.errors import BielikError


@dataclass(frozen=True)
class RewardSample:
    """What a reward sees: the completion's text, whether it stopped on its own, and the task."""

    text: str
    finished: bool
    answer: str
    question: str = ""
    lang: str | None = None


RewardFn = Callable[[RewardSample], float]
REWARDS: dict[str, RewardFn] = {}


def reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Register ``fn`` as the reward ``name`` (a decorator); a name can be registered only once."""

    def register(fn: RewardFn) -> RewardFn:
        if name in REWARDS and REWARDS[name] is not fn:
            raise BielikError(f"a reward named '{name}' is already registered ({REWARDS[name].__module__})")
        REWARDS[name] = fn
        return fn

    return register


def get_rewards(names) -> dict[str, RewardFn]:
    """The reward functions of ``names``; an unknown name is an error listing the known ones."""
    missing = [n for n in names if n not in REWARDS]
    if missing:
        raise BielikError(
            f"unknown reward(s) {missing}; known: {', '.join(sorted(REWARDS))} "
            "(register your own with @bielik.train.rewards.reward and list its module in reward_modules)"
        )
    return {n: REWARDS[n] for n in names}


# ------------------------------------------------------------------------------------------- rewards
@reward("accuracy")
def accuracy(sample: RewardSample) -> float:
    """1.0 when the final answer equals the reference as a number (either reading of an ambiguous one)."""
    ref = parse_reference(sample.answer)
    return float(ref is not None and ref in final_answer(sample.text))


@reward("format")
def answer_format(sample: RewardSample) -> float:
    """1.0 when the completion stopped on its own and states its answer after a marker."""
    return float(sample.finished and has_marked_answer(sample.text))
