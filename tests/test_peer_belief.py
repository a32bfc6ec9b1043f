"""Robots that act on beliefs of their peers' positions (``[belief] peers``, ``models/warehouse/peers.py``).

The hold rule at its boundary (a peer believed exactly ahead holds, one next to that cell does not
on a fresh read, and on an old read it does with belief on but not with belief off), patience, a
deterministic run with the switch on, the switch off building nothing, and one-line errors for bad
values. The trace hashes of every shipped scenario, ``warehouse-peers.toml`` included, are in
``tests/test_trace_contract.py``.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from desim.app.runner import build, prepare, run
from desim.app.scenario import load
from desim.belief import BeliefCfg
from desim.models.warehouse.floor import Action, Floor
from desim.models.warehouse.layout import Layout
from desim.models.warehouse.observe import FloorView, RobotObs, Views
from desim.models.warehouse.peers import PeerBeliefs, covers
from desim.scenario import parse

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "scenarios" / "warehouse-peers.toml"
SMALL_EVENT = ROOT / "scenarios" / "warehouse-small-event.toml"
FORWARD, NOOP, LEFT = int(Action.FORWARD), int(Action.NOOP), int(Action.LEFT)


class _Sim:
    now = 0.0


@pytest.fixture(scope="module")
def corridor():
    """A tiny floor's view and a robot cell with three free cells in a row ahead of it:
    (view, robot cell, heading, the cell ahead, the cell after it)."""
    floor = Floor(Layout.from_size("tiny"), 2, 2, "individual")
    floor.reset()
    view = Views(floor, _Sim()).view()
    st = view.static
    for c in range(st.n_cells):
        for d in range(4):
            a = int(st.nbr[c, d])
            b = int(st.nbr[a, d])
            if a != c and b != a and int(st.nbr[b, d]) != b:
                return view, c, d, a, b
    raise AssertionError("no straight run of four cells on the tiny floor")


def _view(view: FloorView, t: float, me: tuple[int, int], peer: int) -> FloorView:
    """``view`` at time ``t`` with robot 0 at cell ``me[0]`` heading ``me[1]`` and robot 1 at ``peer``."""
    cell = view.cell.copy()
    cell[0], cell[1] = me[0], peer
    heading = view.dir.copy()
    heading[0] = me[1]
    return dataclasses.replace(view, t=t, cell=cell, dir=heading)


def _beliefs(enabled: bool = True, patience: int = 4) -> PeerBeliefs:
    cfg = BeliefCfg(enabled=enabled, peers=True, peer_patience=patience)
    return PeerBeliefs(cfg, n=2, width=5)


def _gate(pb: PeerBeliefs, view: FloorView, now: float, action: int = FORWARD) -> int:
    return pb.gate(0, RobotObs(0, view), action, now)


def test_covers_at_its_boundary():
    assert covers((1.5, 0.0), (0.0, 0.0), (1, 0), 2.0)  # half a cell: the peer's own cell
    assert not covers((1.51, 0.0), (0.0, 0.0), (1, 0), 2.0)
    assert covers((2.0, 0.0), (0.5, 0.5), (1, 0), 2.0)  # k * std = 1 cell
    assert not covers((2.01, 0.0), (0.5, 0.5), (1, 0), 2.0)
    assert not covers((1.0, 1.0), (0.0, 0.0), (1, 0), 2.0)  # both axes must cover


@pytest.mark.parametrize("enabled", [True, False], ids=["belief on", "belief off"])
def test_a_peer_believed_exactly_ahead_holds_and_one_next_to_that_cell_does_not(corridor, enabled):
    view, c, d, ahead, beyond = corridor
    pb = PeerBeliefs(BeliefCfg(enabled=enabled, peers=True), n=2, width=view.static.width)
    v = _view(view, 10.0, (c, d), ahead)
    pb.read(0, v, 10.02)
    assert _gate(pb, v, 10.02) == NOOP and pb.holds.tolist() == [1, 0]
    pb = PeerBeliefs(BeliefCfg(enabled=enabled, peers=True), n=2, width=view.static.width)
    v = _view(view, 10.0, (c, d), beyond)  # two cells from the robot, next to the cell ahead
    pb.read(0, v, 10.02)
    assert _gate(pb, v, 10.02) == FORWARD and pb.holds.tolist() == [0, 0]


def test_staleness_widens_the_region_with_belief_on_only(corridor):
    view, c, d, _ahead, beyond = corridor
    v = _view(view, 10.0, (c, d), beyond)
    on = PeerBeliefs(BeliefCfg(enabled=True, peers=True), n=2, width=view.static.width)
    off = PeerBeliefs(BeliefCfg(enabled=False, peers=True), n=2, width=view.static.width)
    for pb in (on, off):
        pb.read(0, v, 12.0)
    # belief on: std = sqrt(~0.05 + 0.5 * 2 s) ~ 1.02 cells, k * std ~ 2 > 1: the peer may have moved in
    assert _gate(on, v, 12.0) == NOOP and on.holds[0] == 1
    assert _gate(off, v, 12.0) == FORWARD and off.holds[0] == 0  # the last raw read, std 0


def test_an_old_out_of_order_read_does_not_replace_a_newer_one_with_belief_on(corridor):
    view, c, d, ahead, beyond = corridor
    on = PeerBeliefs(BeliefCfg(enabled=True, peers=True, peer_k=0.0), n=2, width=view.static.width)
    off = PeerBeliefs(BeliefCfg(enabled=False, peers=True, peer_k=0.0), n=2, width=view.static.width)
    new, old = _view(view, 10.0, (c, d), beyond), _view(view, 9.0, (c, d), ahead)
    for pb in (on, off):
        pb.read(0, new, 10.1)
        pb.read(0, old, 10.2)  # arrives late: the peer was ahead at 9.0
    assert _gate(on, new, 10.2) == FORWARD and on.summary()["peer_reads_ignored"] == 1
    assert _gate(off, new, 10.2) == NOOP  # the naive agent believes the late packet


def test_patience_lets_the_move_through_and_other_actions_pass(corridor):
    view, c, d, ahead, _beyond = corridor
    pb = PeerBeliefs(BeliefCfg(peers=True, peer_patience=2), n=2, width=view.static.width)
    v = _view(view, 1.0, (c, d), ahead)
    pb.read(0, v, 1.0)
    assert [_gate(pb, v, 1.0) for _ in range(3)] == [NOOP, NOOP, FORWARD]
    assert pb.summary()["peer_holds"] == 2 and pb.summary()["peer_releases"] == 1
    assert _gate(pb, v, 1.0, LEFT) == LEFT and _gate(pb, v, 1.0) == NOOP  # a turn resets the count
    assert pb.summary()["peer_holds_by_robot"] == [3, 0]


def test_a_robot_with_no_read_of_a_peer_does_not_hold(corridor):
    view, c, d, ahead, _beyond = corridor
    pb = PeerBeliefs(BeliefCfg(peers=True), n=2, width=view.static.width)
    assert _gate(pb, _view(view, 1.0, (c, d), ahead), 1.0) == FORWARD


def test_a_run_with_peers_on_is_deterministic_per_seed_and_holds():
    sc = load(PEERS)
    a, b = (run(sc, 2, 300.0, file=str(PEERS)).summary for _ in range(2))
    assert a["trace_hash"] == b["trace_hash"] and a["peer_holds_by_robot"] == b["peer_holds_by_robot"]
    assert a["peer_holds"] > 0  # the rule fired, so the run exercised it
    off = run(sc.model_copy(update={"belief": sc.belief.model_copy(update={"peers": False})}), 2, 300.0).summary
    assert off["trace_hash"] != a["trace_hash"] and "peer_holds" not in off


def test_the_switch_off_builds_nothing_and_keeps_the_trace():
    sc = load(SMALL_EVENT)
    assert sc.belief.peers is False and build(prepare(sc), 1).model.peers is None
    explicit = sc.model_copy(update={"belief": BeliefCfg(peers=False, peer_k=5.0, peer_patience=9)})
    assert run(explicit, 1, 60.0).summary["trace_hash"] == run(sc, 1, 60.0).summary["trace_hash"]
    on = sc.model_copy(update={"belief": BeliefCfg(peers=True)})
    assert isinstance(build(prepare(on), 1).model.peers, PeerBeliefs)


def test_the_fields_parse():
    sc = parse('name = "x"\n[belief]\npeers = true\npeer_k = 3.5\npeer_patience = 7\n')
    assert (sc.belief.peers, sc.belief.peer_k, sc.belief.peer_patience) == (True, 3.5, 7)
    assert BeliefCfg().peers is False


TICK = SMALL_EVENT.read_text().replace('tempo = "event"', 'tempo = "tick"')
BAD = {
    "k too large": ("[belief]\npeers = true\npeer_k = 11.0\n", "belief.peer_k"),
    "k negative": ("[belief]\npeer_k = -1.0\n", "belief.peer_k"),
    "patience zero": ("[belief]\npeer_patience = 0\n", "belief.peer_patience"),
    "patience not an integer": ("[belief]\npeer_patience = 2.5\n", "belief.peer_patience"),
    "peers not a bool": ('[belief]\npeers = "yes"\n', "belief.peers"),
}


@pytest.mark.parametrize("case", list(BAD) + ["tick tempo"])
def test_a_bad_value_is_one_line_naming_the_field(tmp_path, case):
    if case == "tick tempo":
        text, field = TICK + "\n[belief]\npeers = true\n", "belief.peers"
    else:
        text, field = SMALL_EVENT.read_text() + "\n" + BAD[case][0], BAD[case][1]
    f = tmp_path / "s.toml"
    f.write_text(text)
    r = subprocess.run([sys.executable, "-m", "desim.app.cli", "validate", str(f)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{field}:" in r.stderr
