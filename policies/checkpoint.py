"""Versioned checkpoints, and learned policies as brains.

A checkpoint is one ``torch.save`` file holding plain data (loadable with
``weights_only=True``): the algorithm's registry name, its config, the
environment it was trained on (env kwargs, observation radius), the policy
version, and the learner's ``state_dict``. ``policies.train`` writes
``<algo>-vNNNN.pt`` for every candidate and ``latest.pt`` for the promoted
incumbent.

``load_brain(path, rng)`` turns a checkpoint into a desim brain
(``desim run SCENARIO --brain checkpoint:PATH``): every robot runs the same
policy version, and the decisions that fall at one instant are encoded and
decided in one batched forward pass (on CUDA when there is one).
"""
from __future__ import annotations

import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from desim.models.warehouse.features import Encoder
from desim.policies.common import EnvInfo, device as pick_device
from desim.policies.plugin import MODES
from desim.policies.spec import learner_class
from desim.scenario import ScenarioError

FORMAT = 1


def _config_of(learner: Any) -> dict:
    cfg = getattr(learner, "cfg", None)
    if is_dataclass(cfg):
        return asdict(cfg)
    return dict(cfg or {})


def save_checkpoint(path: str | os.PathLike, learner: Any, *, algo: str, env_kwargs: dict, obs_radius: int,
                    version: int, env_steps: int, **extra: Any) -> Path:
    """Write a checkpoint atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "algo": algo,
        "cfg": _config_of(learner),
        "info": asdict(learner.info),
        "env_kwargs": dict(env_kwargs),
        "obs_radius": int(obs_radius),
        "policy_version": int(version),
        "updates": int(getattr(learner, "policy_version", 0)),
        "env_steps": int(env_steps),
        "learner": learner.state_dict(),
        **extra,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint's contents; ValueError (one line) for a missing or foreign file."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"no checkpoint at {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: the user's input
        raise ValueError(f"{p}: not a desim checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "learner" not in ckpt:
        raise ValueError(f"{p}: not a desim checkpoint (format {FORMAT} expected)")
    return ckpt


def load_learner(path: str | os.PathLike, device: str | torch.device = "auto"):
    """``(learner, checkpoint)``: the learner rebuilt from its registry name and config."""
    ckpt = load_checkpoint(path)
    cls = learner_class(ckpt["algo"])
    learner = cls(EnvInfo(**ckpt["info"]), ckpt["cfg"], pick_device(device) if isinstance(device, str) else device, 0)
    learner.load_state_dict(ckpt["learner"])
    return learner, ckpt



class Memory:
    """The hidden state a recurrent policy carries for each agent between its decisions.

    Keys name agents (a robot's index in a run; ``(env copy, agent)`` in an
    evaluation); an agent never seen starts from the policy's initial state.
    Only agents that decide move on: ``put`` is called for the rows that acted.
    """

    def __init__(self, learner: Any):
        self.learner = learner
        self.h: dict[Any, torch.Tensor] = {}

    def get(self, keys: Sequence) -> torch.Tensor:
        init = self.learner.initial_memory(1)[0]
        return torch.stack([self.h.get(k, init) for k in keys])

    def put(self, keys: Sequence, h: torch.Tensor) -> None:
        for k, row in zip(keys, h):
            self.h[k] = row

    def reset(self, keys: Sequence | None = None) -> None:
        """Forget the given agents' state (an episode starts), or everyone's."""
        if keys is None:
            self.h.clear()
        for k in keys or ():
            self.h.pop(k, None)


def decide(learner: Any, obs: np.ndarray, agent_ids: np.ndarray, mode: str = "sample",
           rng: np.random.Generator | None = None, memory: Memory | None = None,
           keys: Sequence | None = None) -> np.ndarray:
    """Actions of a learned policy for one batch of decisions (one forward pass).

    ``sample``: draw from the policy's action distribution with ``rng`` (the
    policy as trained; reproducible, since the draws come from a seeded numpy
    generator), for learners with ``action_probs``; ``argmax``: the most
    probable (or greedy-Q) action. Learners without ``action_probs`` (VDN,
    QMIX) always act greedily. A recurrent policy (``learner.recurrent``)
    reads and updates each deciding agent's hidden state in ``memory`` under
    ``keys`` (one per row); without a memory it decides from a fresh state.
    """
    if getattr(learner, "recurrent", False) and memory is not None:
        keys = list(range(len(obs))) if keys is None else list(keys)
        p, h = learner.policy_step(obs, agent_ids, memory.get(keys))
        memory.put(keys, h)
        if mode != "sample" or rng is None:
            return p.argmax(-1)
    elif mode == "sample" and rng is not None and hasattr(learner, "action_probs"):
        p = learner.action_probs(obs, agent_ids)
    else:
        return np.asarray(learner.act(obs, agent_ids, deterministic=True))
    u = rng.random((len(p), 1))
    return np.minimum((u > np.cumsum(p, axis=-1)).sum(-1), p.shape[-1] - 1)


class CheckpointBrain:
    """A learned policy as a desim brain: one version for every robot, one
    forward pass per instant; actions drawn from the policy with the
    scenario's brain stream (``mode="sample"``), or its most probable action
    (``mode="argmax"``). A recurrent policy keeps each robot's hidden state
    for the run, moved on at that robot's own decisions."""

    name = "checkpoint"

    def __init__(self, learner: Any, ckpt: dict, rng: np.random.Generator, path: str = "", mode: str = "sample"):
        if mode not in MODES:
            raise ValueError(f"checkpoint:{path}#{mode}: mode must be one of {', '.join(MODES)}")
        self.learner = learner
        self.path = path
        self.mode = mode
        self.algo = ckpt["algo"]
        self.policy_version = int(ckpt["policy_version"])
        self.radius = int(ckpt["obs_radius"])
        self.n_agents = int(ckpt["info"]["n_agents"])
        self.rng = rng
        self.memory = Memory(learner) if getattr(learner, "recurrent", False) else None  # per robot, for the run
        self._encoder = None

    def act(self, observations: Sequence) -> list[int]:
        if not observations:
            return []
        static = observations[0].view.static
        if self._encoder is None or self._encoder.static is not static:
            self._encoder = Encoder(static, self.radius)
        x = self._encoder.encode_batch(observations)
        ids = np.fromiter((ob.agent for ob in observations), dtype=np.int64, count=len(observations))
        if ids.max() >= self.n_agents:  # a ScenarioError: the CLI reports it in one line, exit 2
            raise ScenarioError(self.path, "warehouse.robots", f"this checkpoint was trained for {self.n_agents} robots; "
                                f"robot {int(ids.max())} has no agent id (use at most {self.n_agents} robots)")
        return decide(self.learner, x, ids, self.mode, self.rng, self.memory, ids.tolist()).tolist()


def load_brain(path: str, rng: np.random.Generator, mode: str = "sample") -> CheckpointBrain:
    """The checkpoint at ``path`` as a brain (on CUDA when available); ``mode`` is ``sample`` or ``argmax``.
    (The spec ``checkpoint:PATH#MODE`` is parsed by :mod:`desim.policies.spec`.)"""
    learner, ckpt = load_learner(path, "auto")
    return CheckpointBrain(learner, ckpt, rng, str(path), mode or "sample")
