"""Episode replay for off-policy multi-agent learners, stamped with policy versions.

- ``EpisodeRecorder``: collects one vector env's steps into whole episodes
  (one open episode per env copy) and hands each finished one over.
- ``EpisodeReplay``: a FIFO store of whole episodes; ``sample`` returns a
  padded batch (``EpisodeBatch``) of episodes with a step mask.
- ``fresh`` / ``peers_fresh``: the staleness filter. Every step of every
  episode carries every agent's policy version at collection time
  (``versions``, ``(T, N)``); with ``max_staleness=k`` a step whose agents'
  versions lag the learner's current version by more than ``k`` is dropped
  (masked out of the batch; an episode none of whose steps is fresh leaves the
  store, since versions only grow and it can never become fresh again).
  ``max_staleness=None`` turns the filter off.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

FIELDS = ("obs", "state", "actions", "rewards", "acting", "versions")


def fresh(versions: np.ndarray, current: int, k: int | None) -> np.ndarray:
    """Per agent: is its version at most ``k`` behind ``current``? (All True when ``k`` is None.)"""
    versions = np.asarray(versions)
    if k is None:
        return np.ones(versions.shape, dtype=bool)
    return current - versions <= k


def peers_fresh(versions: np.ndarray, current: int, k: int | None) -> np.ndarray:
    """Per agent ``i`` (last axis): are all *other* agents' versions at most ``k`` behind?

    What an independent (per-agent) learner keeps; a joint learner keeps a step
    where every agent is fresh, i.e. ``fresh(...).all(-1)``."""
    f = fresh(versions, current, k)
    stale = (~f).sum(-1, keepdims=True)
    return (stale - (~f)) == 0


@dataclass
class EpisodeBatch:
    """Padded episodes, batch-first: ``(B, T, ...)``.

    ``obs (B,T,N,D)``, ``state (B,T,S)``, ``actions (B,T,N) long``,
    ``rewards (B,T,N)``, ``acting (B,T,N)`` (1 where the agent acted),
    ``versions (B,T,N) long``, ``roles (B,N) long`` (the robot that played each
    role; identity without role rotation), ``filled (B,T)`` (1 on real steps),
    ``mask (B,T)`` (filled and fresh: the steps a joint learner trains on),
    ``terminal (B,T)`` (1 on each episode's last real step: no bootstrap).
    """

    obs: torch.Tensor
    state: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    acting: torch.Tensor
    versions: torch.Tensor
    roles: torch.Tensor
    filled: torch.Tensor
    mask: torch.Tensor
    terminal: torch.Tensor


class EpisodeReplay:
    """Whole episodes, oldest dropped first beyond ``capacity``; uniform sampling.

    An episode is a dict of arrays with a leading time axis ``T``: ``obs
    (T,N,D)``, ``state (T,S)``, ``actions (T,N)``, ``rewards (T,N)``,
    ``acting (T,N)``, ``versions (T,N)``, and ``roles (N,)``; optionally
    ``terminal`` (default True: the last step does not bootstrap; False for an
    episode cut short by the collector).
    """

    def __init__(self, capacity: int, max_staleness: int | None = None, seed: int = 0):
        self.episodes: deque[dict] = deque(maxlen=capacity)
        self.max_staleness = max_staleness
        self.rng = np.random.default_rng(seed)
        self.dropped_steps = 0  # steps the staleness filter has dropped from the store

    def __len__(self) -> int:
        return len(self.episodes)

    def add(self, episode: dict) -> None:
        self.episodes.append(episode)

    def _evict_stale(self, current: int) -> None:
        if self.max_staleness is None:
            return
        keep = deque(maxlen=self.episodes.maxlen)
        for ep in self.episodes:
            if fresh(ep["versions"], current, self.max_staleness).all(-1).any():
                keep.append(ep)
            else:
                self.dropped_steps += len(ep["actions"])
        self.episodes = keep

    def sample(self, batch_size: int, current: int, device: torch.device | str = "cpu") -> EpisodeBatch | None:
        """``batch_size`` episodes drawn uniformly (with replacement) among those with a
        fresh step for learner version ``current``; None when there are none."""
        self._evict_stale(current)
        if not self.episodes:
            return None
        idx = self.rng.integers(len(self.episodes), size=batch_size)
        eps = [self.episodes[i] for i in idx]
        return collate(eps, current, self.max_staleness, device)


def collate(episodes: list[dict], current: int = 0, max_staleness: int | None = None,
            device: torch.device | str = "cpu") -> EpisodeBatch:
    """Pad a list of episodes to the longest one and apply the staleness filter."""
    B, T = len(episodes), max(len(ep["actions"]) for ep in episodes)
    out = {}
    for f in FIELDS:
        first = episodes[0][f]
        arr = np.zeros((B, T) + first.shape[1:], dtype=first.dtype)
        for b, ep in enumerate(episodes):
            arr[b, : len(ep[f])] = ep[f]
        out[f] = arr
    filled = np.zeros((B, T), dtype=np.float32)
    terminal = np.zeros((B, T), dtype=np.float32)
    for b, ep in enumerate(episodes):
        n = len(ep["actions"])
        filled[b, :n] = 1
        terminal[b, n - 1] = 1.0 if ep.get("terminal", True) else 0.0
    mask = filled * fresh(out["versions"], current, max_staleness).all(-1)
    roles = np.stack([ep["roles"] for ep in episodes])

    def t(x, dtype):
        return torch.as_tensor(x, dtype=dtype, device=device)

    return EpisodeBatch(
        obs=t(out["obs"], torch.float32), state=t(out["state"], torch.float32),
        actions=t(out["actions"], torch.long), rewards=t(out["rewards"], torch.float32),
        acting=t(out["acting"], torch.float32), versions=t(out["versions"], torch.long),
        roles=t(roles, torch.long), filled=t(filled, torch.float32), mask=t(mask, torch.float32),
        terminal=t(terminal, torch.float32))


class EpisodeRecorder:
    """Builds whole episodes from a vector env's steps, one open episode per env copy.

    ``record(obs, state, actions, rewards, acting, versions, done)`` takes one
    vector step (leading axis ``E``) and returns the episodes that step
    finished (each a dict for :meth:`EpisodeReplay.add`). ``roles (E,N)``, the
    robot playing each role, is recorded per episode (identity by default).
    """

    def __init__(self, n_envs: int):
        self.open: list[dict[str, list]] = [self._empty() for _ in range(n_envs)]
        self.roles: list[np.ndarray | None] = [None] * n_envs

    @staticmethod
    def _empty() -> dict[str, list]:
        return {f: [] for f in FIELDS}

    def record(self, obs, state, actions, rewards, acting, versions, done, roles=None) -> list[dict]:
        finished = []
        for e, ep in enumerate(self.open):
            if not ep["actions"]:
                self.roles[e] = np.arange(obs.shape[1]) if roles is None else np.array(roles[e])
            for f, x in zip(FIELDS, (obs, state, actions, rewards, acting, versions)):
                ep[f].append(np.array(x[e]))
            if done[e]:
                finished.append(self._close(e))
        return finished

    def _close(self, e: int) -> dict:
        ep = {f: np.stack(v) for f, v in self.open[e].items()}
        ep["roles"] = self.roles[e]
        self.open[e] = self._empty()
        return ep
