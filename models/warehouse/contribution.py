"""True per-robot contributions to a whole episode, and traceability: does assigned credit follow them?

A credit method (global reward, difference rewards, a mixer's ``dQ_tot/dQ_i``,
shaped terms) assigns each robot a share of an episode's success. Whether
that share is *traceable* is an empirical question: does it follow what the
robot actually did for the team? The simulator can answer it exactly, because
an episode can be re-run with one robot taken out:

    contribution_i = G(u) - G(u^-i, NOOP)

``G(u)`` is the team return (the floor's own rewards, summed over robots and
steps) of the episode the floors played under the joint actions ``u``;
``G(u^-i, NOOP)`` is the team return of the same episode re-simulated from
the same initial state with robot ``i`` on NOOP for the whole episode. This is
the episode-level version of the one-step difference reward of
:mod:`~desim.models.warehouse.counterfactual`.

**Open loop.** In the counterfactual every other robot replays its *recorded*
actions; nobody re-plans around the missing robot. That is a choice, and the
reason is attribution: in a closed-loop re-run (the policy queried again on
the counterfactual observations) the teammates would react, and the
difference would mix robot ``i``'s own effect with the policy's response to
its absence (a teammate taking over its shelf hides what it did; a teammate
thrown off its path adds what it did not). Open loop changes robot ``i``
alone, so the difference is robot ``i``'s causal effect with everything else
held fixed, and it is exact, not estimated. The price: a teammate whose
recorded path went through a cell robot ``i`` now never vacates, or that
relied on a shelf robot ``i`` would have fetched, is charged to robot ``i``
(its presence mattered) even though a reacting teammate might have coped.

**Common random numbers.** Every random draw of a
:class:`~desim.models.warehouse.batched.BatchedFloor` is a hash of (seed,
stream id, episode, step, slot); :meth:`BatchedFloor.load_repeated` copies a
floor's state *and* its stream ids, so every copy draws the very request
refills the original would draw at the same step from the same queue. The
re-simulation of all ``E * N`` counterfactuals is one batch of floor copies
(copy ``f * N + i`` is episode ``f`` with robot ``i`` on NOOP), stepped ``T``
times: the cost of ``N`` more episodes per episode, with no observations
built. The re-simulation with nobody replaced reproduces the real returns
exactly (``tests/test_credit_traceability.py``), which is the check that the
random numbers are common.

:func:`traceability` is the Pearson correlation, pooled over robots and
episodes, between what a method assigned and these contributions.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from desim.models.warehouse.batched import BatchedFloor
from desim.models.warehouse.counterfactual import NOOP
from desim.models.warehouse.vector_env import BatchedWarehouseEnv

__all__ = ["Contributions", "Episodes", "counterfactual_returns", "record_episodes", "replay_returns",
           "traceability", "true_contributions"]

ActionsFn = Callable[[torch.Tensor], torch.Tensor]
# keywords that would change what the env's step returns or how long an episode is; the true
# contribution is measured on the floor's own reward over exactly ``steps`` steps
_REFUSED = ("credit", "shaping", "max_steps", "n_envs", "seed", "device")


@dataclass(frozen=True)
class Episodes:
    """``E`` recorded episodes of ``T`` steps: where they started and what every robot did.

    ``initial``: a private copy of the floors at the start (``E`` floors, own
    streams; only read by the replays); ``actions`` ``(T, E, N)`` int64;
    ``team_return`` ``(E,)`` float32: the floor's own rewards summed over
    robots and the steps up to and including the episode's end."""

    initial: BatchedFloor
    actions: torch.Tensor
    team_return: torch.Tensor


@dataclass(frozen=True)
class Contributions:
    """Each robot's true contribution to each episode (``(E, N)`` tensors) and the episodes.

    ``contribution[f, i] = real[f] - counterfactual[f, i]``: episode ``f``'s
    team return minus its team return re-simulated with robot ``i`` on NOOP
    throughout (open loop, common random numbers)."""

    episodes: Episodes
    real: torch.Tensor
    counterfactual: torch.Tensor
    contribution: torch.Tensor


def _copy(floor: BatchedFloor, repeats: int) -> BatchedFloor:
    """A fresh batch of ``repeats`` copies of each of ``floor``'s floors (state, counters, streams);
    ``floor`` is only read (``load_repeated`` makes new tensors)."""
    out = BatchedFloor(floor.layout, floor.n_agents, floor.request_queue_size, floor.n_floors * repeats,
                       floor.reward_type, max_steps=floor.max_steps or None,
                       max_inactivity_steps=floor.max_inactivity_steps or None, seed=floor.seed,
                       device=floor.device)
    out.load_repeated(floor, repeats)
    return out


def _check_actions(actions: torch.Tensor, T: int | None, E: int, N: int) -> torch.Tensor:
    a = torch.as_tensor(actions)
    if a.dim() != 3 or a.shape[1:] != (E, N) or (T is not None and a.shape[0] != T):
        want = f"(T, {E}, {N})" if T is None else f"({T}, {E}, {N})"
        raise ValueError(f"actions must have shape {want}, got {tuple(a.shape)}")
    if a.numel() and (int(a.min()) < 0 or int(a.max()) > 4):
        raise ValueError("actions must be in 0..4")
    return a.long()


def _play(floor: BatchedFloor, joint: torch.Tensor) -> torch.Tensor:
    """Step ``floor`` through ``joint`` ``(T, floors, N)``; ``(floors,)`` team returns, counting a
    floor's rewards up to and including the step that ends its episode (a floor is not reset here)."""
    total = torch.zeros(floor.n_floors, dtype=torch.float32, device=floor.device)
    alive = torch.ones(floor.n_floors, dtype=torch.bool, device=floor.device)
    for a in joint:
        rewards, done = floor.step(a)
        total += torch.where(alive, rewards.sum(1), 0.0)
        alive &= ~done
    return total


def replay_returns(initial: BatchedFloor, actions: torch.Tensor) -> torch.Tensor:
    """``(E,)`` team returns of the episodes re-simulated from ``initial`` under ``actions`` ``(T, E, N)``,
    nobody replaced (the common-random-numbers check). ``initial`` and ``actions`` are only read."""
    a = _check_actions(actions, None, initial.n_floors, initial.n_agents).to(initial.device)
    return _play(_copy(initial, 1), a)


def counterfactual_returns(initial: BatchedFloor, actions: torch.Tensor, default: int = NOOP) -> torch.Tensor:
    """``(E, N)``: entry ``[f, i]`` is episode ``f``'s team return re-simulated from ``initial`` with robot
    ``i``'s actions all replaced by ``default`` and every other robot replaying ``actions`` ``(T, E, N)``
    (open loop). One batch of ``E * N`` floor copies; ``initial`` and ``actions`` are only read."""
    if not 0 <= int(default) <= 4:
        raise ValueError(f"default action must be in 0..4, got {default!r}")
    E, N = initial.n_floors, initial.n_agents
    a = _check_actions(actions, None, E, N).to(initial.device)
    ar = torch.arange(N, device=initial.device)
    diag = ar[:, None] == ar[None, :]  # row i: robot i replaced
    joint = torch.where(diag, int(default), a[:, :, None, :]).reshape(a.shape[0], E * N, N)  # (T, E*N, N)
    return _play(_copy(initial, N), joint).reshape(E, N)


def record_episodes(env: BatchedWarehouseEnv, actions_fn: ActionsFn, steps: int,
                    seed: int | None = None) -> Episodes:
    """Reset ``env`` (with ``seed``: its streams restart there) and play ``steps`` steps of every floor
    under ``actions_fn(obs (E, N, D)) -> actions (E, N)``, recording the joint actions.

    ``env`` must pay the floor's own reward (``credit="individual"``, no shaping): the team return is
    summed from what ``step`` returns. A floor whose episode ends before ``steps`` counts its rewards
    up to that end (the env resets it; the later actions are recorded and replayed, their rewards not
    counted, in the replays alike)."""
    if env.credit != "individual" or env.shaping:
        raise ValueError("record_episodes needs an env that pays the floor's own reward "
                         "(credit='individual', shaping=0)")
    T = int(steps)
    if T < 1:
        raise ValueError(f"steps must be at least 1, got {steps!r}")
    obs, _state, _acting = env.reset(seed=seed)
    initial = _copy(env.floor, 1)
    E, N = env.n_envs, env.n_agents
    total = torch.zeros(E, dtype=torch.float32, device=env.device)
    alive = torch.ones(E, dtype=torch.bool, device=env.device)
    recorded = []
    for _ in range(T):
        a = torch.as_tensor(actions_fn(obs), device=env.device)
        a = _check_actions(a[None], 1, E, N)[0].clone()  # a copy: the caller may reuse its tensor
        recorded.append(a)
        obs, _state, rewards, done, _acting = env.step(a)
        total += torch.where(alive, rewards.sum(1), 0.0)
        alive &= ~done
    return Episodes(initial, torch.stack(recorded), total)


def true_contributions(actions_fn: ActionsFn, *, episodes: int, steps: int, seed: int = 0,
                       device: str | torch.device = "cpu", default: int = NOOP,
                       **env_kwargs: Any) -> Contributions:
    """Each robot's true contribution to ``episodes`` episodes of ``steps`` steps played by ``actions_fn``.

    The floors come from ``BatchedWarehouseEnv(**env_kwargs)`` (``size``, ``robots``, ``layout``,
    ``request_queue``, ``reward``, ``obs``, ``scenario``, ...) with ``n_envs=episodes``,
    ``max_steps=steps``, ``seed``, ``device``, the floor's own reward and no shaping (so those keywords
    are refused here). The episodes are played once, then re-simulated for every robot at once."""
    bad = sorted(set(env_kwargs) & set(_REFUSED))
    if bad:
        raise ValueError(f"true_contributions sets {bad[0]!r} itself (the contribution is measured on the "
                         "floor's own reward over exactly `steps` steps of `episodes` floors)")
    env = BatchedWarehouseEnv(n_envs=int(episodes), max_steps=int(steps), seed=int(seed), device=device,
                              **env_kwargs)
    try:
        ep = record_episodes(env, actions_fn, steps, seed=seed)
    finally:
        env.close()
    cf = counterfactual_returns(ep.initial, ep.actions, default)
    return Contributions(ep, ep.team_return, cf, ep.team_return[:, None] - cf)


def traceability(assigned: torch.Tensor, true: torch.Tensor) -> float:
    """Pearson correlation between assigned credit and true contribution, pooled over every entry.

    ``assigned`` and ``true`` have the same shape (``(E, N)``: robots of episodes, or any shape; they
    are flattened together, so each robot of each episode is one point). Pooling is the point: a
    method is traceable when, across episodes *and* robots, more credit goes where more was done.
    Computed in float64.

    Undefined cases return ``nan``, never 0: when either vector is constant (no robot did anything
    different, e.g. a policy that never delivers: every contribution 0; or global reward, which
    assigns every robot the same) the correlation has a zero denominator, and "no evidence" must not
    be read as "uncorrelated"; a caller reports it as undefined. Fewer than two points is also
    ``nan``. Ties are otherwise ordinary values (Pearson, not a rank correlation: no tie rule is needed).
    Non-finite inputs are refused."""
    x = torch.as_tensor(assigned, dtype=torch.float64).reshape(-1).cpu()
    y = torch.as_tensor(true, dtype=torch.float64).reshape(-1).cpu()
    if x.shape != y.shape:
        raise ValueError(f"assigned and true must have the same number of entries, got {x.numel()} and {y.numel()}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("traceability needs finite credit and contributions")
    if x.numel() < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    sx, sy = float(dx.square().sum()), float(dy.square().sum())
    # a spread at the level of rounding is no spread (a constant vector's mean may not be exact)
    if sx <= 1e-24 * max(1.0, float(x.abs().max()) ** 2) * x.numel() or \
            sy <= 1e-24 * max(1.0, float(y.abs().max()) ** 2) * y.numel():
        return math.nan
    r = float((dx * dy).sum()) / math.sqrt(sx * sy)
    return max(-1.0, min(1.0, r))
