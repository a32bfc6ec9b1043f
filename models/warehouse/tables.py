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
# -- the order pipeline and its services (pipeline.Services.tables()) ------------------------------
ORDER_OUTCOMES = declare_table(  # one row per order: completed | failed (reason) | pending; latency to its end
    "order_outcomes", {"oid": pa.int64(), "shelf": pa.int64(), "created": pa.float64(), "outcome": pa.string(),
                       "reason": pa.string(), "latency": pa.float64(), "rounds": pa.int64(), "retries": pa.int64(),
                       "price": pa.float64()},
    required=("oid", "outcome"))
TOOL_CALLS = declare_table(  # one row per attempt at a tool, client side; fault: what the injector did (ground truth)
    "tool_calls", {"t": pa.float64(), "agent": pa.string(), "tool": pa.string(), "request": pa.int64(),
                   "status": pa.int64(), "latency": pa.float64(), "fault": pa.string(), "detail": pa.string()},
    required=("t", "tool", "status"))
INVENTORY_READS = declare_table(  # one row per database read by the lookup tool; staleness = t - as_of
    "inventory_reads", {"t": pa.float64(), "node": pa.string(), "sku": pa.int64(), "value": pa.int64(),
                        "version": pa.int64(), "lsn": pa.int64(), "as_of": pa.float64(), "staleness": pa.float64(),
                        "true_value": pa.int64(), "true_version": pa.int64()},
    required=("t", "node", "sku"))
