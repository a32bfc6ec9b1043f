"""What ``desim run`` prints of a warehouse run, and its headline in ``desim runs list``.

The runner prints its own rows (time, events, messages, conservation); these are the warehouse's,
registered on its :class:`~desim.registry.ModelSpec` (``printout``, ``headline``)."""
from __future__ import annotations

FIGURES = (
    "tempo", "brain", "robots", "floor", "deliveries", "throughput_per_hour", "order_latency", "collisions",
    "blocked_moves", "deadlocks", "deadlocks_by_kind", "longest_stuck_s", "longest_still_s", "orders", "orders_conserved", "retries",
    "corrupt_observations", "mean_return", "robot_time", "robot_time_share", "bottleneck",
    # with the order pipeline (pipeline.Services) and with peer beliefs (peers.PeerBeliefs)
    "pipeline", "pipeline_conserved", "peer_holds", "peer_holds_by_robot", "peer_releases", "peer_reads_ignored",
)
"""Every top-level figure a warehouse run's summary may hold (the ModelSpec's ``figures``)."""

REFINES = ("retries", "brain")
"""Runner figures the warehouse reports its own way: retries include the robots' observation requests;
brain is the scenario's brain (the runner then writes the spec it resolved)."""


def _num(v) -> str:
    return f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"


def printout(s: dict) -> list[tuple[str, str]]:
    """The warehouse's rows: deliveries, throughput, collisions, deadlocks, order latency, orders."""
    rows = [(key.replace("_", " "), _num(s[key])) for key in ("deliveries", "throughput_per_hour", "collisions", "deadlocks")
            if key in s]
    if s.get("longest_stuck_s"):
        rows.append(("longest deadlock held", f"{s['longest_stuck_s']:,.0f} s"))
    if s.get("longest_still_s"):
        rows.append(("longest stand in one cell (with work)", f"{s['longest_still_s']:,.0f} s"))
    ol = s.get("order_latency")
    if ol:
        rows.append(("order latency p50/p95/p99", " / ".join(f"{ol[k]:.1f}" if ol.get(k) is not None else "-"
                                                              for k in ("p50", "p95", "p99")) + " s"))
    o = s.get("orders")
    if o:
        rows.append(("orders created/completed/pending", f"{o['created']} / {o['completed']} / {o['pending']}"))
        rows += [(f"orders failed: {reason}", f"{n:,}") for reason, n in o["failed"].items()]
    return rows


def headline(s: dict) -> str:
    return f"{s['deliveries']:,} deliveries"
