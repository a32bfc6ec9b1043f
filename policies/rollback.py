"""Promotion and rollback of candidate policies.

At each checkpoint the training loop hands the learner's current policy (the
candidate) to a :class:`Gatekeeper`. The gatekeeper evaluates it on held-out
seeds (seeds disjoint from every training seed; a deterministic evaluation:
fixed env seeds and, when the policy is sampled, a fixed action-draw seed) and
compares it with the incumbent, the last promoted policy:

- promoted if ``candidate >= incumbent - tolerance``, where
  ``tolerance = margin_abs + margin_frac * |incumbent|``; the candidate becomes
  the incumbent;
- otherwise rolled back: the learner's weights (and optimiser and normaliser
  state) revert to the incumbent's, and the reason is returned for the store.

The first candidate has no incumbent to lose to and is promoted.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from desim.policies.checkpoint import Memory, decide
from desim.policies.floors import host_floors


@dataclass
class Decision:
    """One row of the ``promotions`` table."""

    step: int
    candidate_version: int
    incumbent_version: int  # 0: there was no incumbent
    candidate_return: float
    incumbent_return: float | None
    tolerance: float
    decision: str  # "promote" or "rollback"
    reason: str

    @property
    def promoted(self) -> bool:
        return self.decision == "promote"


class Gatekeeper:
    """Keeps the incumbent policy; promotes or rolls back each candidate."""

    def __init__(self, evaluate: Callable[[Any], float], margin_abs: float = 1.0, margin_frac: float = 0.1):
        self.evaluate = evaluate
        self.margin_abs = margin_abs
        self.margin_frac = margin_frac
        self.incumbent_version = 0
        self.incumbent_return: float | None = None
        self.incumbent_state: dict | None = None

    def consider(self, learner: Any, version: int, step: int) -> Decision:
        score = float(self.evaluate(learner))
        inc = self.incumbent_return
        if inc is None:
            tol = 0.0
            decision, reason = "promote", f"first candidate (held-out return {score:.2f})"
        else:
            tol = self.margin_abs + self.margin_frac * abs(inc)
            if score >= inc - tol:
                decision = "promote"
                reason = f"held-out return {score:.2f} >= incumbent v{self.incumbent_version} {inc:.2f} - tolerance {tol:.2f}"
            else:
                decision = "rollback"
                reason = (f"held-out return {score:.2f} < incumbent v{self.incumbent_version} {inc:.2f} - tolerance {tol:.2f}:"
                          f" weights reverted to v{self.incumbent_version}")
        d = Decision(step, version, self.incumbent_version, score, inc, tol, decision, reason)
        if d.promoted:
            self.incumbent_version, self.incumbent_return = version, score
            self.incumbent_state = copy.deepcopy(learner.state_dict())
        else:
            updates = getattr(learner, "policy_version", 0)
            learner.load_state_dict(copy.deepcopy(self.incumbent_state))
            learner.policy_version = updates  # the update count stays monotonic; the weights are the incumbent's
        return d


def held_out_return(learner: Any, env_kwargs: dict, episodes: int, seed: int, mode: str = "sample") -> float:
    """Mean episode return (summed over agents) of the learner's policy on held-out seeds.

    Runs ``episodes`` env copies seeded ``seed * 1000 + k`` (the vector env's
    rule) for one episode each; every decision of an instant is one batched
    call. ``mode`` as in :func:`policies.checkpoint.decide`; in ``sample``
    mode the draws come from ``numpy.random.default_rng(seed)``, so the same
    policy on the same seeds always scores the same (common random numbers for
    candidate and incumbent).
    """
    venv = host_floors(env_kwargs, episodes, seed)  # the kind of floors the policy trained on
    rng = np.random.default_rng(seed)
    obs, _state, acting = venv.reset()
    E, N, D = obs.shape
    ids = np.tile(np.arange(N), E)
    total = np.zeros(E)
    finished = np.zeros(E, dtype=bool)
    memory = Memory(learner) if getattr(learner, "recurrent", False) else None
    while not finished.all():
        if memory is None:
            actions = decide(learner, obs.reshape(E * N, D), ids, mode, rng).reshape(E, N)
        else:  # only the agents that decide move their hidden state on
            rows = np.flatnonzero(np.asarray(acting).reshape(-1))
            actions = np.zeros(E * N, np.int64)
            actions[rows] = decide(learner, obs.reshape(E * N, D)[rows], ids[rows], mode, rng, memory, rows.tolist())
            actions = actions.reshape(E, N)
        obs, _state, rew, done, acting = venv.step(actions)
        if memory is not None:
            memory.reset([e * N + i for e in np.flatnonzero(done) for i in range(N)])
        total += np.where(finished, 0.0, rew.sum(axis=1))
        finished |= done
    return float(total.mean())
