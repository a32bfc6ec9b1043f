"""Robots that act on beliefs of their peers' positions, not on the last raw view (issue 12).

In the event tempo a robot decides on a floor snapshot its zone controller took at ``view.t``; by
the time its move reaches the floor, a peer may have moved into the cell it drives into. With
``[belief] peers = true`` each robot keeps a :class:`~desim.belief.PositionBelief` per peer,
updated from every observation it receives (the read is the peer's cell as ``(x, y)`` and reflects
``view.t``; a read older than one held is ignored, see ``desim.belief``). When its brain chooses
``FORWARD``, :meth:`PeerBeliefs.gate` checks the cell ahead against those beliefs: if some peer's
believed position covers it,

    ``|mean_x - x| <= max(0.5, k * std_x)`` and ``|mean_y - y| <= max(0.5, k * std_y)``

(``k``: ``[belief] peer_k``), the robot holds: the action becomes ``NOOP`` for that decision, the
robot asks for a fresh observation and decides again. The uncertainty grows with staleness, so a
stale view makes the robot careful about cells next to where a peer was; a fresh one only about
the peer's own cell. With ``[belief] enabled = false`` the same rule runs on the last raw read
received (std 0: only the exact cell of the peer in that read).

The brain does not know its ``FORWARD`` was held (the greedy brain counts the moves it refused
itself, not these), so two robots that each believe the other may take the cell between them would
hold for ever; after ``peer_patience`` holds in a row the next ``FORWARD`` goes through and the
floor's rules decide, as without beliefs.

This is a component around any brain (or the PettingZoo ``external`` hook): the robot's loop calls
:meth:`read` with each observation it receives and :meth:`gate` with each decision. It draws no
random numbers; with ``peers = false`` it is not built and traces are unchanged. Cost: one filter
per (robot, peer) pair, updated on every observation: meant for floors of tens of robots.
"""
from __future__ import annotations

import numpy as np

from desim.belief import BeliefCfg, PositionBelief
from desim.models.warehouse.floor import Action

FORWARD, NOOP = int(Action.FORWARD), int(Action.NOOP)
MIN_REACH = 0.5  # cells: a belief always covers its own (rounded) cell


def covers(mean: tuple[float, float], std: tuple[float, float], cell: tuple[int, int], k: float) -> bool:
    """Whether a believed position (``mean``, ``std`` per axis) covers ``cell``: within
    ``max(0.5, k * std)`` of the mean on both axes."""
    return (abs(mean[0] - cell[0]) <= max(MIN_REACH, k * std[0])
            and abs(mean[1] - cell[1]) <= max(MIN_REACH, k * std[1]))


class PeerBeliefs:
    """Every robot's beliefs of its peers' positions, and the hold rule (see the module).

    A component of the warehouse model (``wh.components``): ``summary()`` adds ``peer_holds``
    (decisions held, all robots), ``peer_holds_by_robot``, ``peer_releases`` (``FORWARD``\\ s let
    through after ``peer_patience`` holds in a row) and ``peer_reads_ignored`` (stale reads the
    filters refused)."""

    def __init__(self, cfg: BeliefCfg, n: int, width: int) -> None:
        self.cfg, self.n, self.width = cfg, n, width
        self.k, self.patience = float(cfg.peer_k), int(cfg.peer_patience)
        self.beliefs: list[list[PositionBelief | None]] = [[None] * n for _ in range(n)]  # [robot][peer]
        self.holds = np.zeros(n, dtype=np.int64)
        self.in_a_row = [0] * n
        self.releases = 0

    @classmethod
    def attach(cls, wh, cfg: BeliefCfg) -> "PeerBeliefs":
        """Wire into a built warehouse model (its robots call :meth:`read` and :meth:`gate`)."""
        self = cls(cfg, wh.n, wh.floor.width)
        wh.peers = self
        wh.tempo.runs = False  # every forward move goes through the gate: no runs without observations
        wh.components.append(self)
        return self

    # -- what the robots call ------------------------------------------------------------------
    def read(self, i: int, view, now: float) -> None:
        """Robot ``i`` received ``view`` (taken at ``view.t``): fold each peer's cell into its belief."""
        row, w = self.beliefs[i], self.width
        t = float(view.t)
        for j, c in enumerate(view.cell.tolist()):
            if j == i:
                continue
            xy = (float(c % w), float(c // w))
            b = row[j]
            if b is None:  # the first read of this peer: the prior is the read itself
                b = row[j] = self.cfg.position_belief(t, prior=xy)
            b.update(xy, t, now)

    def gate(self, i: int, obs, action: int, now: float) -> int:
        """Robot ``i``'s action after the hold rule: ``NOOP`` if it is a ``FORWARD`` into a cell a
        peer's believed position covers (and the robot has not held ``peer_patience`` times in a row)."""
        if action != FORWARD:
            self.in_a_row[i] = 0
            return action
        if self.in_a_row[i] >= self.patience:  # patience ran out: go, and let the floor decide
            self.releases += 1
            self.in_a_row[i] = 0
            return action
        if not self.blocked_ahead(i, obs.view, now):
            self.in_a_row[i] = 0
            return action
        self.in_a_row[i] += 1
        self.holds[i] += 1
        return NOOP

    def blocked_ahead(self, i: int, view, now: float) -> bool:
        """Whether some peer's believed position covers the cell ahead of robot ``i`` (its cell and
        heading in ``view``; a robot knows its own pose)."""
        st, c = view.static, int(view.cell[i])
        ahead = int(st.nbr[c, int(view.dir[i])])
        if ahead == c:  # a wall: no cell to enter
            return False
        return self.covered(i, (ahead % self.width, ahead // self.width), now)

    def covered(self, i: int, cell: tuple[int, int], now: float) -> bool:
        """Whether robot ``i`` believes some peer may be in ``cell`` (see :func:`covers`)."""
        for b in self.beliefs[i]:
            if b is None:
                continue
            ex, ey = b.estimate(now)
            if covers((ex.mean, ey.mean), (ex.std, ey.std), cell, self.k):
                return True
        return False

    # -- the model's component interface ---------------------------------------------------------
    def finish(self) -> None:
        pass

    def summary(self) -> dict:
        ignored = sum(b.x.ignored for row in self.beliefs for b in row if b is not None)
        return {"peer_holds": int(self.holds.sum()), "peer_holds_by_robot": self.holds.tolist(),
                "peer_releases": self.releases, "peer_reads_ignored": ignored}

    def tables(self) -> dict:
        return {}
