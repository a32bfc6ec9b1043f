"""Counterfactual steps on batched floors: the team reward had one robot taken a default action.

A difference reward (Wolpert & Tumer) pays robot ``i``

    D_i = G(u) - G(u^-i, c)

where ``G(u)`` is the team reward of the step the floors actually took under
the joint action ``u`` and ``G(u^-i, c)`` the team reward of the same step,
from the same state, with robot ``i``'s action replaced by the default ``c``
(NOOP) and everyone else's unchanged. Teammates' contributions cancel in the
subtraction; what is left is robot ``i``'s own: +1 for a delivery only it
made, -1 for a delivery it blocked, 0 when its action changed nothing.

On batched floors the counterfactual is exact, not estimated: every random
draw of a :class:`~desim.models.warehouse.batched.BatchedFloor` is a hash of
``(seed, floor, episode, purpose, step, slot)``, so a copy of a floor stepped
from the same state draws the very same request refills (common random
numbers for free). :class:`Counterfactual` keeps one scratch batch of
``n_floors * n_agents`` floors; each call copies the real floors' state into
it (copy ``f * n + i`` is floor ``f`` with robot ``i`` on ``c``, drawing from
floor ``f``'s streams) and steps it once. The real floors are only read. The
cost is one more step of ``n_agents`` times as many floors as the real batch
(no observations are built for it).
"""
from __future__ import annotations

import torch

from desim.models.warehouse.batched import BatchedFloor

__all__ = ["Counterfactual", "NOOP"]

NOOP = 0


class Counterfactual:
    """Counterfactual team rewards for every robot of every floor of ``floor``.

    ``team_rewards(actions)`` -> ``(E, N)`` float32: entry ``[f, i]`` is the team
    reward (the floor's rewards summed over its robots) that floor ``f``'s next
    step would pay with robot ``i``'s action replaced by ``default``. Call it
    *before* ``floor.step(actions)``: it reads the state the step starts from.
    """

    def __init__(self, floor: BatchedFloor, default: int = NOOP) -> None:
        if not 0 <= int(default) <= 4:
            raise ValueError(f"default action must be in 0..4, got {default!r}")
        self.floor, self.default = floor, int(default)
        n, E = floor.n_agents, floor.n_floors
        self.scratch = BatchedFloor(floor.layout, n, floor.request_queue_size, E * n, floor.reward_type,
                                    seed=floor.seed, device=floor.device)
        ar = torch.arange(n, device=floor.device)
        # the (E, N, N) joint actions: row i of floor f is u with robot i on the default
        self._diag = (ar[:, None] == ar[None, :])

    def team_rewards(self, actions: torch.Tensor) -> torch.Tensor:
        """``(E, N)``: the team reward of this step with each robot, in turn, on the default action."""
        f, n = self.floor, self.floor.n_agents
        a = torch.as_tensor(actions, device=f.device).long()
        if a.shape != (f.n_floors, n):
            raise ValueError(f"actions must have shape ({f.n_floors}, {n}), got {tuple(a.shape)}")
        self.scratch.load_repeated(f, n)
        joint = torch.where(self._diag, self.default, a[:, None, :])  # (E, N, N)
        rewards, _done = self.scratch.step(joint.reshape(f.n_floors * n, n))
        return rewards.sum(1).reshape(f.n_floors, n)
