"""The per-robot shaping terms' weights (``[train] shaping_terms``), shared by both kinds of floors."""
from __future__ import annotations

import math


SHAPING_TERMS = ("carrying", "distance", "goal")


def shaping_weights(potential: str, terms: dict | None = None) -> dict[str, float]:
    """The per-robot shaping terms' weights: ``terms`` as given (missing ones 0, ``goal`` 1), or those the
    named ``potential`` stands for (``carrying``: 1, 0, 1; ``distance``: 1, 1, 1). ValueError for an
    unknown term or a weight that is not a finite number."""
    if terms is None:
        return {"carrying": 1.0, "distance": 1.0 if potential == "distance" else 0.0, "goal": 1.0}
    bad = sorted(set(terms) - set(SHAPING_TERMS))
    if bad:
        raise ValueError(f"unknown shaping term {bad[0]!r} (expected {', '.join(SHAPING_TERMS)})")
    out = {"carrying": 0.0, "distance": 0.0, "goal": 1.0}
    for k, v in terms.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"shaping term {k!r} must be a finite number, got {v!r}")
        out[k] = float(v)
    return out
