"""Brains: heuristics and learned policies, by name."""
from __future__ import annotations

import numpy as np

BRAINS = ("random", "greedy", "epsilon_greedy", "checkpoint:PATH")


def make_brain(spec: str, rng: np.random.Generator):
    """A brain from its name: ``random``, ``greedy``, ``epsilon_greedy[:EPS]``, ``checkpoint:PATH``.

    Raises ValueError with a one-line message for an unknown name."""
    from desim.policies.heuristics import EpsilonGreedyBrain, GreedyBrain, RandomBrain

    name, _, arg = spec.partition(":")
    if name == "random":
        return RandomBrain(rng)
    if name == "greedy":
        return GreedyBrain(rng)
    if name == "epsilon_greedy":
        try:
            eps = float(arg) if arg else 0.2
        except ValueError:
            raise ValueError(f"epsilon_greedy:{arg}: epsilon must be a number") from None
        if not 0 <= eps <= 1:
            raise ValueError(f"epsilon_greedy:{arg}: epsilon must be in [0, 1]")
        return EpsilonGreedyBrain(rng, eps)
    if name == "checkpoint":
        try:
            from desim.policies.checkpoint import load_brain
        except ImportError:
            raise ValueError("checkpoint brains need the learning module (policies.checkpoint), not installed yet") from None
        return load_brain(arg, rng)
    raise ValueError(f"unknown brain {spec!r} (expected one of {', '.join(BRAINS)})")
