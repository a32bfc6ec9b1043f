"""Floor.step_one (one robot acts, the rest NOOP) gives exactly Floor.step's result."""
import numpy as np
import pytest

from desim.models.warehouse import Floor, Layout


@pytest.mark.parametrize("size,n,reward", [("tiny", 2, "individual"), ("tiny", 12, "two_stage"), ("small", 20, "global")])
def test_step_one_matches_step(size, n, reward):
    rng = np.random.default_rng(11)
    a = Floor(Layout.from_size(size), n, n, reward, rng=np.random.default_rng(1))
    b = Floor(Layout.from_size(size), n, n, reward, rng=np.random.default_rng(1))
    a.reset()
    b.load_state(a.state_dict())
    checked = {"moves": 0, "collisions": 0, "deliveries": 0, "toggles": 0}
    for _ in range(6000):
        i = int(rng.integers(n))
        act = int(rng.choice(5, p=[0.05, 0.55, 0.15, 0.15, 0.10]))
        joint = np.zeros(n, dtype=np.int64)
        joint[i] = act
        cell0 = int(a.cells[i])
        ra, ia = a.step(joint)
        rb, ib = b.step_one(i, act)
        assert np.array_equal(ra, rb) and ia == ib
        sa, sb = a.state_dict(), b.state_dict()
        for k in sa:
            assert np.array_equal(sa[k], sb[k]), k
        assert np.array_equal(a.blocked_moves, b.blocked_moves)
        assert np.array_equal(a.collisions, b.collisions)
        b.rng.bit_generator.state = a.rng.bit_generator.state
        checked["moves"] += int(a.cells[i] != cell0)
        checked["deliveries"] += ia["delivered"]
        checked["toggles"] += act == 4
    checked["collisions"] = int(a.collisions.sum())
    assert checked["moves"] > 500 and checked["collisions"] > 50 and checked["toggles"] > 300
