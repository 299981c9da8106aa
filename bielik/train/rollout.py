"""Rollout sources: batch sources that sample their batches from the policy being trained.

On-policy objectives (GRPO) need, every few optimizer steps, fresh completions from the *current*
model. :class:`RolloutSource` is an ordinary batch source for the engine (``next_step``,
``state_dict``) that, when its current rollout is used up, takes the next prompts and calls a
``make_rollout`` function with the engine's :meth:`~bielik.train.engine.Engine.policy_call` (the
wrapped policy, so DDP/FSDP2 see a normal forward), its prompts and a seeded ``torch.Generator``.
The micro-batches it returns are replayed for ``reuse`` optimizer steps (GRPO's μ), then the next
rollout is sampled.

Resumption: the engine checkpoints a rollout source only *between* rollouts (``at_boundary``). The
sampler's generator is re-seeded for every rollout from (seed, rank, rollout number), so the state
is just the prompt cursor and the rollout count, valid on every rank: a resumed run samples exactly
the rollout an uninterrupted run would have sampled next.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from bielik.errors import BielikError

PolicyCall = Callable[[Callable[[torch.nn.Module], Any]], Any]
MakeRollout = Callable[[PolicyCall, list[Any], torch.Generator], list[dict[str, torch.Tensor]]]


class RolloutSource:
    """Prompts → rollouts from the current policy, each replayed for ``reuse`` optimizer steps.

    ``prompts_per_rollout`` is global (all ranks); rank ``r`` takes prompts ``r, r + world, ...``
    of each rollout's slice of the epoch's permutation (reshuffled with ``seed + epoch``).
    ``make_rollout(policy_call, prompts, generator)`` returns this rank's micro-batches; every rank
    must return the same number of them (the engine accumulates over them in lockstep).
    """

    def __init__(
        self,
        prompts: Sequence[Any],
        make_rollout: MakeRollout,
        prompts_per_rollout: int,
        reuse: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ):
        if prompts_per_rollout % world_size:
            raise BielikError(
                f"prompts_per_rollout ({prompts_per_rollout}) must be a multiple of the {world_size} processes"
            )
        if len(prompts) < prompts_per_rollout:
            raise BielikError(f"{len(prompts)} prompts, fewer than one rollout of {prompts_per_rollout}")
        if reuse < 1:
            raise BielikError(f"reuse must be >= 1, got {reuse}")
        self.prompts = prompts
        self.make_rollout = make_rollout
        self.per_rollout = prompts_per_rollout
        self.reuse = reuse
        self.rank, self.world = rank, world_size
        self.seed = seed
        self.epoch, self.cursor, self.rollouts = 0, 0, 0
        self._policy: PolicyCall | None = None
        self._batches: list[dict[str, torch.Tensor]] | None = None
        self._uses = 0

    def bind_policy(self, policy_call: PolicyCall) -> None:
        """Called by the engine before the first step: how to run a function of the current policy."""
        self._policy = policy_call

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.prompts))

    def _next_prompts(self) -> list[Any]:
        if self.cursor + self.per_rollout > len(self.prompts):
            self.epoch, self.cursor = self.epoch + 1, 0
        idx = self._permutation()[self.cursor : self.cursor + self.per_rollout]
        self.cursor += self.per_rollout
        return [self.prompts[i] for i in idx[self.rank :: self.world]]

    def next_step(self) -> list[dict[str, torch.Tensor]]:
        if self._batches is None or self._uses >= self.reuse:
            if self._policy is None:
                raise BielikError("RolloutSource has no policy: the engine binds it in fit() (call bind_policy first)")
            self._batches = self.make_rollout(self._policy, self._next_prompts(), self.rollout_generator())
            self.rollouts += 1
            self._uses = 0
        self._uses += 1
        return self._batches

    def rollout_generator(self) -> torch.Generator:
        """The sampler's RNG for the next rollout: a function of (seed, rank, rollout number) only."""
        mixed = np.random.SeedSequence([self.seed, self.rank, self.rollouts]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(mixed))

    @property
    def at_boundary(self) -> bool:
        """True between rollouts (nothing of the current rollout is left to replay)."""
        return self._batches is None or self._uses >= self.reuse

    def state_dict(self) -> dict:
        if not self.at_boundary:
            raise BielikError("a rollout source can only be saved between rollouts")
        return {"epoch": self.epoch, "cursor": self.cursor, "rollouts": self.rollouts, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor, self.rollouts = int(state["epoch"]), int(state["cursor"]), int(state["rollouts"])
        self._batches, self._uses = None, 0
