"""desim's brains and learners, and the ``[train]`` section, registered with the kernel (entry point ``policies``).

Brains are built by factories ``make(arg, mode, rng)``; learners are named
``module:Class`` and imported only when used (a brain never imports the
training orchestrator).
"""
from __future__ import annotations

from pathlib import Path

from desim.policies.config import TrainConfig
from desim.policies.heuristics import EpsilonGreedyBrain, GreedyBrain, RandomBrain
from desim.policies.traffic import TrafficBrain
from desim.registry import PolicyEntry, SectionSpec, policies, sections

MODES = ("sample", "argmax")  # how a checkpoint brain acts: draw from the policy, or its most probable action

LEARNERS = {
    "ippo": "desim.policies.ippo:IPPO",
    "mappo": "desim.policies.mappo:MAPPO",
    "vdn": "desim.policies.vdn:VDN",
    "qmix": "desim.policies.qmix:QMIX",
    "coma": "desim.policies.coma:COMA",
}


def _no_arg(name: str):
    def check(arg: str, mode: str) -> None:
        if arg or mode:
            raise ValueError(f"brain {name!r} takes no argument, got {name}{':' + arg if arg else ''}{'#' + mode if mode else ''}")
    return check


def _epsilon(arg: str) -> float:
    try:
        eps = float(arg) if arg else 0.2
    except ValueError:
        raise ValueError(f"epsilon_greedy:{arg}: epsilon must be a number") from None
    if not 0 <= eps <= 1:
        raise ValueError(f"epsilon_greedy:{arg}: epsilon must be in [0, 1]")
    return eps


def _check_epsilon(arg: str, mode: str) -> None:
    _epsilon(arg)
    if mode:
        raise ValueError(f"epsilon_greedy:{arg}#{mode}: epsilon_greedy takes no #mode")


def _random(arg, mode, rng):
    return RandomBrain(rng)


def _greedy(arg, mode, rng):
    return GreedyBrain(rng)


def _traffic(arg, mode, rng):
    return TrafficBrain(rng)


def _epsilon_greedy(arg, mode, rng):
    return EpsilonGreedyBrain(rng, _epsilon(arg))


def _check_checkpoint(arg: str, mode: str) -> None:
    if not arg:
        raise ValueError("checkpoint brain needs a path: checkpoint:PATH[#MODE]")
    if mode and mode not in MODES:
        raise ValueError(f"checkpoint:{arg}#{mode}: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not Path(arg).is_file():
        raise ValueError(f"no checkpoint at {arg}")


def _checkpoint(arg, mode, rng):
    from desim.policies.checkpoint import load_brain  # lazy: torch costs ~1 s, paid only by checkpoint brains

    return load_brain(arg, rng, mode or "sample")


def register() -> None:
    policies.register("random", PolicyEntry("brain", make=_random, check=_no_arg("random"), description="uniform random actions"))
    policies.register("greedy", PolicyEntry("brain", make=_greedy, check=_no_arg("greedy"),
                                            description="follows the distance maps, reserves cells, gives way"))
    policies.register("traffic", PolicyEntry("brain", make=_traffic, check=_no_arg("traffic"),
                                             description="lifelong PIBT-style traffic controller: priorities, pushes, balanced goals"))
    policies.register("epsilon_greedy", PolicyEntry("brain", make=_epsilon_greedy, check=_check_epsilon,
                                                    description="greedy, random with probability EPS (default 0.2)"))
    policies.register("checkpoint", PolicyEntry("brain", make=_checkpoint, check=_check_checkpoint, needs_arg=True,
                                                description="a trained policy: checkpoint:PATH[#sample|#argmax]"))
    for name, target in LEARNERS.items():
        policies.register(name, PolicyEntry("learner", target=target, description=f"learner {target}"))
    sections.register("train", SectionSpec(TrainConfig, owner="desim.policies",
                                           description="training settings for `desim train`; [train.<algo>] tables",
                                           requires="warehouse"))
