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
import re
import warnings
import zipfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from desim.models.warehouse.features import Encoder
from desim.policies.common import EnvInfo, device as pick_device
from desim.policies.plugin import MODES
from desim.policies.spec import learner_class, learner_names
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


# what a checkpoint holds besides its weights, and the type each entry must have
_ENTRIES = {"format": int, "algo": str, "cfg": dict, "info": dict, "obs_radius": int, "policy_version": int,
            "learner": dict}
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6 is a zip archive
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # older torch.save files
_UNSAFE = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint's contents; ValueError, one line in desim's words naming ``path``, for anything that
    is not a readable desim checkpoint (missing, a directory, empty, text, foreign bytes, truncated, a
    PyTorch file of something else, a pickle of Python objects, a checkpoint of an unknown learner).

    The file is read with ``weights_only=True``: a checkpoint holds tensors and plain data only, so
    loading one never runs code from the file."""
    p, shown = Path(path), _shown(path)
    try:
        exists = p.exists()
    except (OSError, ValueError):  # a name the OS cannot take (a NUL byte, too long)
        exists = False
    if not exists:
        raise ValueError(f"no such checkpoint file {shown}")
    if p.is_dir():
        raise ValueError(f"{shown} is a directory, not a checkpoint file")
    try:
        with open(p, "rb") as f:
            head = f.read(len(_LEGACY_MAGIC))
    except OSError as e:
        raise ValueError(f"cannot read checkpoint file {shown} ({e.strerror or type(e).__name__})") from None
    if not head:
        raise ValueError(f"{shown} is empty, not a desim checkpoint")
    if not (head.startswith(_ZIP_MAGIC) or head == _LEGACY_MAGIC):
        raise ValueError(f"{shown} is {_what(p, head)}, not a desim checkpoint (not a PyTorch file)")
    if head.startswith(_ZIP_MAGIC) and not zipfile.is_zipfile(p):
        raise ValueError(f"{shown} is a truncated or damaged PyTorch file, not a readable desim checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the user gets one line, ours
            warnings.simplefilter("ignore")
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's own messages are pages long: say what is wrong in one line
        unsafe = _UNSAFE.search(str(e))
        if unsafe:
            raise ValueError(f"{shown} holds Python objects ({unsafe.group(1)}) that desim will not unpickle for safety; "
                             f"a desim checkpoint holds only tensors and plain data") from None
        if head.startswith(_ZIP_MAGIC) and not _has_torch_data(p):
            raise ValueError(f"{shown} is a zip archive, not a PyTorch file or desim checkpoint") from None
        raise ValueError(f"{shown} is a truncated or damaged PyTorch file, not a readable desim checkpoint") from None
    _check_entries(shown, ckpt)
    return ckpt


def _shown(path) -> str:
    """The path as the user wrote it, on one line."""
    s = os.fsdecode(path)
    return s if s.isprintable() else repr(s)


def _what(p: Path, head: bytes) -> str:
    """A few words on a file that is not a PyTorch file."""
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle"
    try:
        with open(p, "rb") as f:
            f.read(4096).decode("utf-8")
    except UnicodeDecodeError:
        return "a file of foreign bytes"
    except OSError:
        pass
    return "a text file"


def _has_torch_data(p: Path) -> bool:
    try:
        with zipfile.ZipFile(p) as z:
            return any(n.endswith("data.pkl") for n in z.namelist())
    except Exception:  # noqa: BLE001  (a damaged archive: the caller says so)
        return True


def _check_entries(shown: str, ckpt: Any) -> None:
    """ValueError (one line) unless ``ckpt`` has every entry of a desim checkpoint, of the right type,
    in this desim's format, for a learner this desim knows."""
    if not isinstance(ckpt, dict):
        raise ValueError(f"{shown} is a PyTorch file but not a desim checkpoint (no 'algo' entry: it holds "
                         f"a {type(ckpt).__name__}, not a dict)")
    if "algo" not in ckpt or "learner" not in ckpt:
        missing = " or ".join(repr(k) for k in ("algo", "learner") if k not in ckpt)
        raise ValueError(f"{shown} is a PyTorch file but not a desim checkpoint (no {missing} entry)")
    fmt = ckpt.get("format")
    if fmt != FORMAT:
        raise ValueError(f"{shown} is a desim checkpoint of format {fmt!r}; this desim reads format {FORMAT}")
    algo = ckpt["algo"]
    if not isinstance(algo, str) or algo not in learner_names():
        raise ValueError(f"{shown} is a checkpoint of an unknown learner {algo!r} "
                         f"(this desim knows {', '.join(learner_names())})")
    for k, kind in _ENTRIES.items():
        if k not in ckpt:
            raise ValueError(f"{shown} is an incomplete desim checkpoint (no {k!r} entry)")
        v = ckpt[k]
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise ValueError(f"{shown} is a damaged desim checkpoint (its {k!r} is a {type(v).__name__}, "
                             f"not a {kind.__name__})")
    if not isinstance(ckpt["info"].get("n_agents"), int):
        raise ValueError(f"{shown} is a damaged desim checkpoint (its 'info' has no number of agents)")


def load_learner(path: str | os.PathLike, device: str | torch.device = "auto"):
    """``(learner, checkpoint)``: the learner rebuilt from its registry name and config.
    ValueError (one line) when the file is not a desim checkpoint or its contents do not fit the learner."""
    ckpt = load_checkpoint(path)
    try:
        cls = learner_class(ckpt["algo"])
    except ValueError as e:
        raise ValueError(f"{_shown(path)}: {e}") from None
    dev = pick_device(device) if isinstance(device, str) else device
    try:
        learner = cls(EnvInfo(**ckpt["info"]), ckpt["cfg"], dev, 0)
        learner.load_state_dict(ckpt["learner"])
    except (TypeError, KeyError, ValueError, RuntimeError, AttributeError, IndexError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise ValueError(f"{_shown(path)} is a damaged {ckpt['algo']} checkpoint: its contents do not fit the learner "
                         f"({type(e).__name__}{': ' + first if first else ''})") from None
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
        if (ckpt.get("env_kwargs") or {}).get("observations", "features") != "features":
            raise ScenarioError(path, "brain", "this checkpoint was trained on rware's observation vector (a benchmark "
                                "setting); brains see desim's features: train with [train] observations = \"features\"")
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
