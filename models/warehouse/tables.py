"""The warehouse's run tables, declared for the results store (rows from ``WarehouseModel.tables()``)."""
from __future__ import annotations

import pyarrow as pa

from desim.models.warehouse.robot_time import STATES, WAITING  # noqa: F401  (WAITING: for readers of robot_time)
from desim.store import declare_table

TIMESERIES = declare_table(
    "timeseries", {"t": pa.float64(), "metric": pa.string(), "value": pa.float64()},
    required=("t", "metric", "value"))
CONTENTION = declare_table(  # per floor cell; cell: 'highway' | 'shelf' | 'goal'
    "contention", {"x": pa.int64(), "y": pa.int64(), "blocked": pa.int64(), "collisions": pa.int64(),
                   "cell": pa.string()},
    required=("x", "y"))
PATHS = declare_table(  # robot positions over time
    "paths", {"t": pa.float64(), "robot": pa.int64(), "x": pa.int64(), "y": pa.int64()},
    required=("t", "robot", "x", "y"))
EVENTS = declare_table(  # shared with the network's fault events; detail is JSON text
    "events", {"t": pa.float64(), "kind": pa.string(), "agent": pa.string(), "detail": pa.string()},
    required=("t", "kind"))
ORDERS = declare_table(  # one row per order; times in simulated seconds, None if it never got there
    "orders", {"oid": pa.int64(), "shelf": pa.int64(), "created": pa.float64(), "assigned": pa.float64(),
               "picked": pa.float64(), "delivered": pa.float64(), "failed": pa.float64(), "reason": pa.string()},
    required=("oid",))
ROBOT_TIME = declare_table(  # one row per robot: simulated seconds per state (see robot_time.STATES), summing to the run
    "robot_time", {"robot": pa.int64(), "zone": pa.int64(),
                   **{s: pa.float64() for s in STATES}},
    required=("robot",))
ROBOT_TIME_SERIES = declare_table(  # per sample (every sample_every s) and robot: cumulative seconds per state so far
    "robot_time_series", {"t": pa.float64(), "robot": pa.int64(), **{s: pa.float64() for s in STATES}},
    required=("t", "robot"))
FLOOR_FRAMES = declare_table(  # playback: per frame, each robot's flat cell, heading, carried shelf (-1) and the
    # requested shelves, as comma-separated integers (the store has no list columns)
    "floor_frames", {"t": pa.float64(), "cell": pa.string(), "heading": pa.string(), "cargo": pa.string(),
                     "requests": pa.string()},
    required=("t", "cell"))
FLOOR_SHELVES = declare_table(  # playback: every shelf's cell at 0 s, then each put-down elsewhere
    "floor_shelves", {"t": pa.float64(), "shelf": pa.int64(), "cell": pa.int64()},
    required=("t", "shelf", "cell"))
