"""A second desim model, for the tutorial (docs/tutorial.md): clients and servers on a network.

Each client sends requests at a Poisson rate to a server picked at random; a server
answers them one at a time, after an exponential service time; a client measures each
request's response time, and gives up on it after ``timeout`` seconds.

Load it with ``DESIM_PLUGINS=clientserver`` (run from this folder) and run
``desim run clientserver.toml``.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
from pydantic import Field

from desim.agent import Agent
from desim.registry import ModelSpec, SectionSpec, models, sections
from desim.scenario import ScenarioError, Section


class ClientServerCfg(Section):
    """The ``[clientserver]`` section of a scenario."""

    clients: int = Field(4, ge=1)
    servers: int = Field(2, ge=1)
    rate: float = Field(2.0, gt=0, description="requests per second per client (Poisson)")
    service_time: float = Field(0.05, gt=0, description="mean service time, seconds (exponential)")
    timeout: float = Field(1.0, gt=0, description="seconds a client waits for an answer")


class Server(Agent):
    """Answers requests in arrival order, one at a time."""

    def __init__(self, sim, name: str, cfg: ClientServerCfg):
        self.cfg, self.stream, self.served = cfg, sim.rng.stream(f"clientserver:{name}"), 0
        super().__init__(sim, name, role="service")

    def behaviour(self):
        while True:
            msg = yield self.receive()
            yield self.sim.env.timeout(self.stream.exponential(self.cfg.service_time))
            self.served += 1
            self.send(msg.src, "response", payload=msg.payload, size=1500)


class Client(Agent):
    """Sends requests; records each one's response time, or a timeout; counts answers that come too late."""

    def __init__(self, sim, name: str, cfg: ClientServerCfg, servers: list[str], log: list):
        self.cfg, self.servers, self.log = cfg, servers, log
        self.stream, self.pending, self.late = sim.rng.stream(f"clientserver:{name}"), {}, 0
        super().__init__(sim, name, role="agent")
        sim.env.process(self._requests())

    def _requests(self):
        env, n = self.sim.env, 0
        while True:
            yield env.timeout(self.stream.exponential(1.0 / self.cfg.rate))
            server = self.servers[int(self.stream.integers(len(self.servers)))]
            rid, n = f"{self.name}/{n}", n + 1
            self.pending[rid] = row = {"t": env.now, "client": self.name, "server": server,
                                       "outcome": "pending", "response_time": None}
            self.log.append(row)
            self.send(server, "request", payload=rid, size=200)
            env.timeout(self.cfg.timeout).callbacks.append(lambda _ev, rid=rid: self._expire(rid))

    def _expire(self, rid: str) -> None:
        row = self.pending.pop(rid, None)
        if row is not None:
            row["outcome"] = "timeout"

    def on_message(self, msg) -> None:
        row = self.pending.pop(msg.payload, None)
        if row is None:  # an answer after the client gave up
            self.late += 1
        else:
            row["outcome"], row["response_time"] = "answered", self.sim.now - row["t"]


class ClientServerModel:
    """What the runner needs of a model: ``finish()``, ``summary()`` and ``tables()``."""

    def __init__(self, sim, cfg: ClientServerCfg, clients: list[str], servers: list[str]):
        self.log: list[dict] = []
        self.servers = [Server(sim, s, cfg) for s in servers]
        self.clients = [Client(sim, c, cfg, servers, self.log) for c in clients]

    def finish(self) -> None:
        pass  # requests still pending at the end stay "pending"

    def summary(self) -> dict:
        out = {o: sum(r["outcome"] == o for r in self.log) for o in ("answered", "timeout", "pending")}
        times = [r["response_time"] for r in self.log if r["outcome"] == "answered"]
        pct = {f"p{q}": float(np.percentile(times, q)) if times else None for q in (50, 95, 99)}
        return {"requests": len(self.log), **out, "late_answers": sum(c.late for c in self.clients),
                "response_time": pct, "served": {s.name: s.served for s in self.servers},
                "requests_conserved": len(self.log) == sum(out.values())}

    def tables(self) -> dict[str, dict[str, list]]:
        cols = ("t", "client", "server", "outcome", "response_time")
        return {"cs_requests": {c: [r[c] for r in self.log] for c in cols}}


def topology(sc, file: str = "<scenario>") -> nx.Graph:
    """A star: every client and server on one switch (desim's roles: clients are 'agent', servers 'service')."""
    cfg, g = sc.clientserver, nx.Graph()
    g.add_node("switch", role="switch")
    nodes = [(f"client-{i}", "agent") for i in range(cfg.clients)] + [(f"server-{j}", "service") for j in range(cfg.servers)]
    for name, role in nodes:
        g.add_node(name, role=role)
        g.add_edge("switch", name)
    return g


def check(sc, graph: nx.Graph, file: str = "<scenario>") -> tuple[list[str], list[str]]:
    """Checks beyond the section's own fields; returns what ``build`` needs: the clients and the servers."""
    if sc.traffic:
        raise ScenarioError(file, "traffic", "a [clientserver] scenario makes its own traffic; drop [[traffic]]")
    roles = nx.get_node_attributes(graph, "role")
    return sorted(n for n in graph if roles[n] == "agent"), sorted(n for n in graph if roles[n] == "service")


def build(sim, net, sc, prepared, brain) -> ClientServerModel:
    clients, servers = prepared
    return ClientServerModel(sim, sc.clientserver, clients, servers)


def rate(sc, prepared) -> float:
    """Events per simulated second, over-estimated: per request a send, a timer, a service time, an answer, hops."""
    return 16 * sc.clientserver.clients * sc.clientserver.rate


def register() -> None:
    sections.register("clientserver", SectionSpec(ClientServerCfg, owner="tutorial", description="clients and servers"))
    models.register("clientserver", ModelSpec("clientserver", build=build, check=check, topology=topology, rate=rate,
                                              headline=lambda s: f"{s['answered']:,}/{s['requests']:,} answered",
                                              description="clients send requests to servers over the network"))
