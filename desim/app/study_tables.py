"""The tables a study writes to the store (``desim study credit|nonstationarity``), declared once.

A study is one run of kind ``study``; its ``config`` holds ``study`` (``credit`` or
``nonstationarity``), the scenario file, ``algos``, ``seeds``, ``steps`` and the event-tempo
scenario it deploys on. Each *arm* (an allocation method, or a nonstationarity switch on or off)
is trained once per seed; every training run is an ordinary ``train`` run of the store too
(``train_run`` names it).
"""
from __future__ import annotations

import pyarrow as pa

from desim.store import declare_table

_ARM = {"arm": pa.string(), "method": pa.string(), "algo": pa.string(), "switch": pa.string(), "setting": pa.string()}

# train_s_per_10k: training wall seconds per 10,000 env steps (rollouts, counterfactuals and updates)
STUDY_SEEDS = declare_table(  # one row per (arm, seed): what that training run measured
    "study_seeds", {**_ARM, "seed": pa.int64(), "train_run": pa.string(), "steps": pa.int64(),
                    "final_return": pa.float64(), "converged": pa.bool_(), "steps_to_converge": pa.float64(),
                    "traceability": pa.float64(), "traceability_pooled": pa.float64(),
                    "train_s_per_10k": pa.float64(), "params": pa.int64(), "config_lines": pa.int64(),
                    "dph_tick": pa.float64(), "dph_event": pa.float64(), "production_gap": pa.float64(),
                    "wall_s": pa.float64()},
    required=("arm", "seed"))
STUDY_CURVES = declare_table(  # held-out return (the floor's own team reward) at each checkpoint
    "study_curves", {"arm": pa.string(), "seed": pa.int64(), "step": pa.int64(), "eval_return": pa.float64()},
    required=("arm", "seed", "step"))
STUDY_ARMS = declare_table(  # one row per arm: the seeds summarised, beside the qualitative ratings it tests
    "study_arms", {**_ARM, "seeds": pa.int64(), "return_mean": pa.float64(), "return_std": pa.float64(),
                   "return_var": pa.float64(), "converged_frac": pa.float64(), "steps_to_converge_mean": pa.float64(),
                   "traceability_mean": pa.float64(), "traceability_defined": pa.int64(),
                   "traceability_pooled_mean": pa.float64(), "train_s_per_10k": pa.float64(), "params": pa.int64(),
                   "config_lines": pa.int64(), "dph_tick_mean": pa.float64(), "dph_event_mean": pa.float64(),
                   "production_gap_mean": pa.float64(), "rated_complexity": pa.string(),
                   "rated_stability": pa.string(), "rated_traceability": pa.string()},
    required=("arm", "seeds"))
STUDY_CREDIT = declare_table(  # per robot and episode: the credit the arm assigned and the true contribution
    "study_credit", {"arm": pa.string(), "seed": pa.int64(), "episode": pa.int64(), "robot": pa.int64(),
                     "assigned": pa.float64(), "true": pa.float64()},
    required=("arm", "seed", "episode", "robot"))
