"""The network's run tables: their schemas (declared for the results store) and
:func:`network_tables`, the rows of a finished network."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from desim.store import declare_table

MAX_DELAYS_PER_LINK = 2000

NET_NODES = declare_table(  # the topology's nodes, so a reader never rebuilds it from the scenario
    "net_nodes", {"node": pa.string(), "role": pa.string(), "zone": pa.int64()},
    required=("node", "role"))
NET_LINKS = declare_table(  # one row per directed link (every edge of the topology is two)
    "net_links", {"src": pa.string(), "dst": pa.string(), "sent": pa.int64(), "mean_delay": pa.float64(),
                  "p99_delay": pa.float64(), "expected_delay": pa.float64(), "loss_rate": pa.float64()},
    required=("src", "dst"))
NET_DELAYS = declare_table(  # one-way delay samples (at most MAX_DELAYS_PER_LINK per link), t: when the hop was sent
    "net_delays", {"src": pa.string(), "dst": pa.string(), "delay": pa.float64(), "t": pa.float64()},
    required=("src", "dst", "delay"))
NET_FLOW = declare_table(  # messages per bin (transport.FLOW_BIN s) (t: its start) and role pair; outcome sent | delivered | drop:<reason>
    "net_flow", {"t": pa.float64(), "src_role": pa.string(), "dst_role": pa.string(), "outcome": pa.string(),
                 "count": pa.int64()},
    required=("t", "outcome", "count"))
NET_LATENCY = declare_table(  # end-to-end latency of delivered messages (evenly thinned), t: when it was sent
    "net_latency", {"t": pa.float64(), "src_role": pa.string(), "dst_role": pa.string(), "latency": pa.float64()},
    required=("t", "latency"))
EVENTS = declare_table(  # shared with the warehouse; faults: kind fault_<start|end|heal>, detail {"fault", "target"}
    "events", {"t": pa.float64(), "kind": pa.string(), "agent": pa.string(), "detail": pa.string()},
    required=("t", "kind"))


def network_tables(net) -> dict[str, dict]:
    """The topology's nodes, per-link figures, delay samples (with their send times), the traffic
    over time (``net_flow``, ``net_latency``: recording runs only) and the fault log of a finished network."""
    nodes = {"node": [], "role": [], "zone": []}
    for n, data in sorted(net.graph.nodes(data=True), key=lambda item: str(item[0])):
        zone = data.get("zone")
        nodes["node"].append(str(n))
        nodes["role"].append(str(data.get("role") or ""))
        nodes["zone"].append(None if zone is None else int(zone))
    links = {"src": [], "dst": [], "sent": [], "mean_delay": [], "p99_delay": [], "expected_delay": [], "loss_rate": []}
    delays = {"src": [], "dst": [], "delay": [], "t": []}
    flow = getattr(net, "flow", None)
    for (u, v), link in sorted(net.links.items()):
        d = np.asarray(link.delays if link.delays is not None else [], dtype=float)
        links["src"].append(u)
        links["dst"].append(v)
        links["sent"].append(link.sent)
        links["mean_delay"].append(float(d.mean()) if d.size else None)
        links["p99_delay"].append(float(np.percentile(d, 99)) if d.size else None)
        links["expected_delay"].append(link.spec.expected_latency())
        links["loss_rate"].append(link.spec.loss.rate)
        if d.size:
            step = max(1, d.size // MAX_DELAYS_PER_LINK)
            sample = d[::step][:MAX_DELAYS_PER_LINK]
            sent = flow.delay_t.get((u, v), []) if flow is not None else []
            delays["src"] += [u] * sample.size
            delays["dst"] += [v] * sample.size
            delays["delay"] += sample.tolist()
            delays["t"] += (np.asarray(sent, dtype=float)[::step][:MAX_DELAYS_PER_LINK].tolist()
                            if len(sent) == d.size else [None] * sample.size)
    faults = {"t": [], "kind": [], "agent": [], "detail": []}
    for t, event, kind, detail in net.fault_log:
        faults["t"].append(float(t))
        faults["kind"].append(f"fault_{event}")
        faults["agent"].append("")
        faults["detail"].append(json.dumps({"fault": kind, "target": detail}))
    out = {"net_nodes": nodes, "net_links": links, "net_delays": delays, "events": faults}
    if flow is not None:
        counts = sorted(flow.counts.items())
        out["net_flow"] = {"t": [k[0] * flow.bin for k, _ in counts], "src_role": [k[1] for k, _ in counts],
                           "dst_role": [k[2] for k, _ in counts], "outcome": [k[3] for k, _ in counts],
                           "count": [n for _, n in counts]}
        out["net_latency"] = {"t": list(flow.lat_t), "src_role": [p[0] for p in flow.lat_pair],
                              "dst_role": [p[1] for p in flow.lat_pair], "latency": list(flow.lat)}
    return out
