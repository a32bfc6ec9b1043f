"""desim example model: telemetry from field devices over a radio mesh (examples/telemetry/README.md).

A grid of devices, one reading each every ``period`` seconds, to a collector. The gateway sits at the
grid's corner (cell 0,0): a device far from it reaches it over several radio hops, along the network's
own lowest-latency routes. The gateway reaches the collector over a fast primary uplink, or over a slow,
lossy satellite backup when the primary is cut. The collector acks every reading it gets and
de-duplicates them; a device resends a reading not acked within ``timeout`` seconds, at most
``max_attempts`` times in all, then gives it up.

Run it from this folder: ``DESIM_PLUGINS=telemetry desim run telemetry.toml``.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
from pydantic import Field

from desim.agent import Agent
from desim.registry import ModelSpec, SectionSpec, models, sections
from desim.scenario import ScenarioError, Section

COLLECTOR, GATEWAY, SATELLITE = "collector", "gateway", "satellite"


class TelemetryCfg(Section):
    """The ``[telemetry]`` section of a scenario."""

    rows: int = Field(4, ge=1, le=100, description="rows of the device grid (the gateway takes cell 0,0)")
    cols: int = Field(4, ge=1, le=100)
    period: float = Field(2.0, gt=0, le=3600, description="seconds between a device's readings")
    size: int = Field(100, ge=1, le=1_000_000, description="bytes per reading (an ack is 40)")
    timeout: float = Field(1.5, gt=0, le=3600, description="seconds a device waits for an ack before resending")
    max_attempts: int = Field(4, ge=1, le=100, description="sends per reading, the first included")


class Device(Agent):
    """Sends a reading every ``period`` s; resends it until acked, up to ``max_attempts`` sends."""

    def __init__(self, sim, name: str, cfg: TelemetryCfg, ledger: "TelemetryModel"):
        # (not self.model: an Agent is a Mesa agent, whose .model is its Mesa model)
        self.cfg, self.ledger, self.stream = cfg, ledger, sim.rng.stream(f"telemetry:{name}")
        self.made, self.resends, self.waiting, self.gave_up = 0, 0, {}, set()  # waiting: reading -> sends so far
        super().__init__(sim, name, role="agent")
        sim.env.process(self._readings())

    def _readings(self):
        env = self.sim.env
        yield env.timeout(self.stream.uniform(0, self.cfg.period))  # devices start out of phase
        while True:
            rid, self.made = f"{self.name}/{self.made}", self.made + 1
            self.ledger.opened(rid, self.name, env.now)
            self._transmit(rid, env.now, 1)
            yield env.timeout(self.cfg.period * self.stream.uniform(0.9, 1.1))

    def _transmit(self, rid: str, created: float, attempt: int) -> None:
        self.waiting[rid] = attempt
        self.send(COLLECTOR, "reading", payload=(rid, created), size=self.cfg.size)
        self.sim.env.timeout(self.cfg.timeout).callbacks.append(lambda _ev: self._expire(rid, created, attempt))

    def _expire(self, rid: str, created: float, attempt: int) -> None:
        if self.waiting.get(rid) != attempt:  # acked meanwhile
            return
        if attempt < self.cfg.max_attempts:
            self.resends += 1
            self.ledger.log[rid]["attempts"] += 1
            self._transmit(rid, created, attempt + 1)
        else:
            del self.waiting[rid]
            self.gave_up.add(rid)

    def on_message(self, msg) -> None:  # an ack
        if not msg.corrupted:
            self.waiting.pop(msg.payload, None)


class Collector(Agent):
    """Acks every reading it gets (a resend's too: the first ack may have been lost); keeps the first copy."""

    def __init__(self, sim, name: str):
        self.first: dict[str, float] = {}  # reading -> when it first arrived
        self.duplicates = 0
        super().__init__(sim, name, role="service")

    def on_message(self, msg) -> None:
        if msg.corrupted:
            return
        rid, _created = msg.payload
        if rid in self.first:
            self.duplicates += 1
        else:
            self.first[rid] = self.sim.now
        self.send(msg.src, "ack", payload=rid, size=40)


class TelemetryModel:
    """The devices, the collector and one row per reading (``tm_readings``)."""

    def __init__(self, sim, net, cfg: TelemetryCfg, devices: list[str]):
        self.net, self.log = net, {}
        self.collector = Collector(sim, COLLECTOR)
        self.devices = [Device(sim, d, cfg, self) for d in devices]

    def opened(self, rid: str, device: str, t: float) -> None:
        path = self.net.path(device, COLLECTOR)  # the route the network gives it now (recorded, not chosen)
        via = "none" if path is None else "backup" if SATELLITE in path else "primary"
        self.log[rid] = {"reading": rid, "device": device, "t": t, "route": " > ".join(path or []),
                         "hops": len(path) - 1 if path else None, "via": via, "attempts": 1,
                         "outcome": "pending", "latency": None}

    def finish(self) -> None:
        first, lost = self.collector.first, set().union(*(d.gave_up for d in self.devices))
        for rid, row in self.log.items():
            if rid in first:
                row["outcome"], row["latency"] = "delivered", first[rid] - row["t"]
            elif rid in lost:
                row["outcome"] = "lost"

    def summary(self) -> dict:
        first = self.collector.first
        sent = sum(d.made for d in self.devices)
        lost = sum(len(d.gave_up - first.keys()) for d in self.devices)
        pending = sum(len(d.waiting.keys() - first.keys()) for d in self.devices)
        lat = [first[r] - row["t"] for r, row in self.log.items() if r in first]
        pct = {f"p{q}": float(np.percentile(lat, q)) if lat else None for q in (50, 95, 99)}
        return {"readings": {"sent": sent, "delivered": len(first), "lost": lost, "pending": pending},
                "readings_conserved": sent == len(first) + lost + pending,
                "delivery_ratio": len(first) / sent if sent else None,
                "reading_latency": {**pct, "max": max(lat, default=None)},
                "resends": sum(d.resends for d in self.devices), "duplicates": self.collector.duplicates,
                "via_backup": sum(r["via"] == "backup" for r in self.log.values())}

    def tables(self) -> dict[str, dict[str, list]]:
        cols = ("reading", "device", "t", "route", "hops", "via", "attempts", "outcome", "latency")
        return {"tm_readings": {c: [r[c] for r in self.log.values()] for c in cols}}


def topology(sc, file: str = "<scenario>") -> nx.Graph:
    """Devices on a grid of radio links (kind 'wireless'), the gateway at cell 0,0, two uplinks to the collector."""
    cfg, g = sc.telemetry, nx.Graph()
    name = {(r, c): f"dev-{r}-{c}" for r in range(cfg.rows) for c in range(cfg.cols)}
    name[0, 0] = GATEWAY
    for (r, c), n in name.items():
        g.add_node(n, role="switch" if n == GATEWAY else "agent")
        for nb in ((r + 1, c), (r, c + 1)):
            if nb in name:
                g.add_edge(n, name[nb], kind="wireless")
    g.add_node(COLLECTOR, role="service")
    g.add_node(SATELLITE, role="switch")
    g.add_edge(GATEWAY, COLLECTOR)  # the primary uplink
    g.add_edge(GATEWAY, SATELLITE)  # the backup: up to the satellite ...
    g.add_edge(SATELLITE, COLLECTOR)  # ... and down to the collector
    return g


def check(sc, graph: nx.Graph, file: str = "<scenario>") -> list[str]:
    """The devices, for ``build``; a grid with none, or a scenario with [[traffic]], is refused."""
    if sc.traffic:
        raise ScenarioError(file, "traffic", "a [telemetry] scenario makes its own traffic; drop [[traffic]]")
    devices = sorted(n for n, d in graph.nodes(data=True) if d["role"] == "agent")
    if not devices:
        raise ScenarioError(file, "telemetry", "a 1 x 1 grid is the gateway alone: no devices")
    return devices


def build(sim, net, sc, devices, brain) -> TelemetryModel:
    return TelemetryModel(sim, net, sc.telemetry, devices)


def rate(sc, devices) -> float:
    """Events per simulated second, an upper estimate: every send of every reading and of its ack crossing
    the longest route (around a cut, over the backup), with its timer and its delivery."""
    cfg = sc.telemetry
    hops = cfg.rows + cfg.cols + 4
    return len(devices) / (0.9 * cfg.period) * (1 + cfg.max_attempts * (2 * (hops + 4) + 1))


FIGURES = ("readings", "readings_conserved", "delivery_ratio", "reading_latency", "resends", "duplicates", "via_backup")


def register() -> None:
    sections.register("telemetry", SectionSpec(TelemetryCfg, owner="examples/telemetry",
                                               description="field devices on a radio mesh report to a collector"))
    models.register("telemetry", ModelSpec(
        "telemetry", build=build, check=check, topology=topology, rate=rate, figures=FIGURES, tables=("tm_readings",),
        description="telemetry over a multi-hop radio mesh, a primary and a satellite backup uplink",
        headline=lambda s: f"{s['readings']['delivered']:,}/{s['readings']['sent']:,} readings delivered"))
