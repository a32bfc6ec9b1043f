"""Topology builders. Nodes carry a ``role`` (agent, robot, controller, service,
switch); edges may carry a ``link`` (a LinkSpec) overriding the default."""
from __future__ import annotations

from pathlib import Path

import networkx as nx

ROLES = ("agent", "robot", "controller", "service", "switch")


def _named(n: int, prefix: str = "n") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def star(n: int, center: str = "hub") -> nx.Graph:
    g = nx.Graph()
    g.add_node(center, role="switch")
    for name in _named(n):
        g.add_node(name, role="agent")
        g.add_edge(center, name)
    return g


def line(n: int) -> nx.Graph:
    g = nx.relabel_nodes(nx.path_graph(n), dict(enumerate(_named(n))))
    nx.set_node_attributes(g, "agent", "role")
    return g


def ring(n: int) -> nx.Graph:
    g = nx.relabel_nodes(nx.cycle_graph(n), dict(enumerate(_named(n))))
    nx.set_node_attributes(g, "agent", "role")
    return g


def grid(rows: int, cols: int) -> nx.Graph:
    g = nx.grid_2d_graph(rows, cols)
    g = nx.relabel_nodes(g, {(r, c): f"n{r}_{c}" for r, c in g.nodes})
    nx.set_node_attributes(g, "agent", "role")
    return g


def mesh(n: int) -> nx.Graph:
    g = nx.relabel_nodes(nx.complete_graph(n), dict(enumerate(_named(n))))
    nx.set_node_attributes(g, "agent", "role")
    return g


def robot_name(i: int, zones: int) -> str:
    """Name of robot ``i`` when robots are dealt to zones round-robin."""
    return f"robot-{i % zones}-{i // zones}"


def warehouse(zones: int = 3, robots_per_zone: int = 4, services: tuple[str, ...] = ("inventory", "orders", "procurement"),
              robots: int | None = None) -> nx.Graph:
    """A warehouse network: a core switch; one controller per zone on the core;
    each zone's robots on their controller (the wireless hop); services on the core.
    ``robots`` (a total, dealt round-robin to zones) overrides ``robots_per_zone``."""
    g = nx.Graph()
    g.add_node("core", role="switch")
    for z in range(zones):
        zc = f"zone-{z}"
        g.add_node(zc, role="controller", zone=z)
        g.add_edge("core", zc)
    total = zones * robots_per_zone if robots is None else robots
    for i in range(total):
        z = i % zones
        r = robot_name(i, zones)
        g.add_node(r, role="robot", zone=z, index=i)
        g.add_edge(f"zone-{z}", r, kind="wireless")
    for s in services:
        g.add_node(s, role="service")
        g.add_edge("core", s)
    return g


def from_graphml(path: str | Path) -> nx.Graph:
    g = nx.read_graphml(path)
    return _normalise(nx.Graph(g))


def from_edgelist(path: str | Path) -> nx.Graph:
    """Whitespace-separated ``u v`` per line; ``#`` starts a comment."""
    g = nx.Graph()
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 2:
            raise ValueError(f"line {lineno}: expected 'u v', got {raw.strip()!r}")
        g.add_edge(parts[0], parts[1])
    return _normalise(g)


def _normalise(g: nx.Graph) -> nx.Graph:
    g = nx.relabel_nodes(g, {n: str(n) for n in g.nodes})
    for n, data in g.nodes(data=True):
        data.setdefault("role", "agent")
    return g


def check(g: nx.Graph) -> None:
    """Raise ValueError if the topology cannot carry traffic."""
    if g.number_of_nodes() == 0:
        raise ValueError("topology has no nodes")
    if not nx.is_connected(g):
        parts = sorted(nx.connected_components(g), key=len)
        raise ValueError(f"topology is disconnected ({len(parts)} components; e.g. {sorted(parts[0])[:3]} is cut off)")
    for n, data in g.nodes(data=True):
        if data.get("role") not in ROLES:
            raise ValueError(f"node {n!r} has unknown role {data.get('role')!r}")
