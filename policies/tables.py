"""Training's run tables, declared for the results store (rows from :mod:`desim.policies.train`)."""
from __future__ import annotations

import pyarrow as pa

from desim.store import declare_table

TRAIN_CURVES = declare_table(  # long format: one row per (step, metric)
    "train_curves", {"step": pa.int64(), "wall_s": pa.float64(), "metric": pa.string(), "value": pa.float64(),
                     "algo": pa.string()},
    required=("step", "metric", "value"))
PROMOTIONS = declare_table(  # one row per checkpoint: the Gatekeeper's Decision plus the file
    "promotions", {"step": pa.int64(), "candidate_version": pa.int64(), "incumbent_version": pa.int64(),
                   "candidate_return": pa.float64(), "incumbent_return": pa.float64(), "tolerance": pa.float64(),
                   "decision": pa.string(), "reason": pa.string(), "checkpoint": pa.string()},
    required=("step", "candidate_version", "decision"))
