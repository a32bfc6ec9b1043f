"""Bridge between desim's warehouse :class:`~models.warehouse.Floor` and rware.

rware is a test-only dependency, so this lives under tests/ (models/ never
imports rware). Functions:

- :func:`make_env`: an rware ``Warehouse`` with the same layout and settings
  as a Floor (size parameters when given, else the layout's ASCII map).
- :func:`to_rware`: put an rware env into the exact state of a Floor (robot
  positions/directions/loads/``has_delivered``, shelf positions, request
  queue, step counters), rebuilding its grid.
- :func:`from_rware`: read an rware env's state back as a dict shaped like
  :meth:`Floor.state_dict` (0-based shelf ids, ``carrying`` -1 = none).
- :func:`sync_rng`: copy rware's ``np_random`` state into a Floor's rng.
- :func:`strip_obs`: make ``env.step`` skip observation building (state and
  rewards are unaffected), to time or test the step logic alone.
"""
from __future__ import annotations

import numpy as np
from rware.warehouse import Agent, Direction, ObservationType, RewardType, Shelf, Warehouse

from desim.models.warehouse import Floor, Layout

REWARD = {"global": RewardType.GLOBAL, "individual": RewardType.INDIVIDUAL, "two_stage": RewardType.TWO_STAGE}


def make_env(
    layout: Layout,
    n_agents: int,
    request_queue_size: int,
    reward_type: str = "individual",
    params: tuple[int, int, int] | None = None,
    max_steps: int | None = None,
    max_inactivity_steps: int | None = None,
    observation_type: ObservationType = ObservationType.FLATTENED,
) -> Warehouse:
    """``params`` = ``(shelf_columns, shelf_rows, column_height)`` builds the
    map with rware's own parameter code; otherwise the layout's ASCII map is
    passed as rware's ``layout`` string. Checks both agree with ``layout``."""
    cols, rows, height = params if params is not None else (3, 1, 8)
    env = Warehouse(
        shelf_columns=cols,
        column_height=height,
        shelf_rows=rows,
        n_agents=n_agents,
        msg_bits=0,
        sensor_range=1,
        request_queue_size=request_queue_size,
        max_inactivity_steps=max_inactivity_steps,
        max_steps=max_steps,
        reward_type=REWARD[reward_type],
        layout=None if params is not None else layout.to_ascii(),
        observation_type=observation_type,
    )
    assert tuple(env.grid_size) == layout.shape, (env.grid_size, layout.shape)
    assert np.array_equal(env.highways.astype(bool), layout.highway)
    assert [tuple(map(int, g)) for g in env.goals] == list(layout.goals)
    return env


def strip_obs(env: Warehouse) -> Warehouse:
    """Skip observation construction in ``env.step``/``env.reset`` (returns None obs)."""
    env._make_obs = lambda agent: None
    return env


def sync_rng(env: Warehouse, floor: Floor) -> None:
    """Give the Floor's (PCG64) generator the exact state of rware's ``np_random``."""
    floor.rng.bit_generator.state = env.np_random.bit_generator.state


def to_rware(floor: Floor, env: Warehouse) -> None:
    """Put ``env`` into ``floor``'s current state."""
    st = floor.state_dict()
    Shelf.counter = 0
    env.shelfs = [Shelf(int(x), int(y)) for x, y in zip(st["shelf_x"], st["shelf_y"])]
    Agent.counter = 0
    agents = []
    for i in range(floor.n_agents):
        ag = Agent(int(st["agent_x"][i]), int(st["agent_y"][i]), Direction(int(st["agent_dir"][i])), env.msg_bits)
        c = int(st["carrying"][i])
        ag.carrying_shelf = env.shelfs[c] if c >= 0 else None
        ag.has_delivered = bool(st["has_delivered"][i])
        agents.append(ag)
    env.agents = agents
    env.request_queue = [env.shelfs[int(s)] for s in st["request_queue"]]
    env._cur_steps = int(st["steps"])
    env._cur_inactive_steps = int(st["inactive_steps"])
    env._recalc_grid()


def from_rware(env: Warehouse) -> dict:
    """rware env state as a :meth:`Floor.state_dict`-shaped dict."""
    ag, sh = env.agents, env.shelfs
    return {
        "agent_x": np.array([a.x for a in ag], dtype=np.int64),
        "agent_y": np.array([a.y for a in ag], dtype=np.int64),
        "agent_dir": np.array([a.dir.value for a in ag], dtype=np.int64),
        "carrying": np.array([a.carrying_shelf.id - 1 if a.carrying_shelf else -1 for a in ag], dtype=np.int64),
        "has_delivered": np.array([a.has_delivered for a in ag], dtype=bool),
        "shelf_x": np.array([s.x for s in sh], dtype=np.int64),
        "shelf_y": np.array([s.y for s in sh], dtype=np.int64),
        "request_queue": np.array([s.id - 1 for s in env.request_queue], dtype=np.int64),
        "steps": int(env._cur_steps),
        "inactive_steps": int(env._cur_inactive_steps),
    }


STATE_KEYS = (
    "agent_x",
    "agent_y",
    "agent_dir",
    "carrying",
    "has_delivered",
    "shelf_x",
    "shelf_y",
    "request_queue",
    "steps",
    "inactive_steps",
)


def diff_states(a: dict, b: dict) -> list[str]:
    """Names of the state fields that differ."""
    return [k for k in STATE_KEYS if not np.array_equal(np.asarray(a[k]), np.asarray(b[k]))]
