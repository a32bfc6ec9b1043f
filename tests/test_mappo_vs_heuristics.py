"""A learned MAPPO policy against the heuristic brains, then the production gap.

One MAPPO policy is trained once per session (``desim train``'s code path,
~150k env steps, about two minutes on a laptop CPU core) and plugged into the
simulation as ``checkpoint:PATH``. On the tiny floor in the tick tempo it must
beat epsilon-greedy and come within 80% of greedy, counting deliveries over the
same seeds. Then the same policy runs in the event tempo with a 50 ms mean,
jittered wireless link: the test measures the production gap (deliveries and
throughput lost), and asserts that it is measured, not how large it is.
"""
import math

import numpy as np
import pytest
import torch

from desim.app.runner import run
from desim.models.warehouse.env import scenario_for

pytestmark = pytest.mark.slow

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SEEDS = [1, 2, 3, 4, 5]
EPISODE = 500  # ticks (s) per evaluation run, rware's episode length
GREEDY_FRACTION = 0.8  # "approaches greedy": at least this fraction of greedy's deliveries


@pytest.fixture(scope="session")
def mappo_checkpoint(tmp_path_factory):
    from desim.policies.train import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("mappo")
    result = train(ROOT / "scenarios" / "train-tiny.toml", "mappo", 150_000, device="auto", seed=0,
                   out_dir=out / "ckpt", store_path=out / "runs.duckdb", progress=False)
    print(f"\ntrained MAPPO: {result['steps']} env steps in {result['wall_s']:.0f} s "
          f"({result['env_steps_per_s']:.0f} steps/s), final training return {result['final_return']:.2f}, "
          f"incumbent v{result['incumbent_version']} held-out {result['incumbent_return']:.2f}")
    return result["checkpoint"]


def deliveries(scenario, brain: str) -> tuple[list[int], list[float]]:
    sums = [run(scenario, seed=s, brain=brain).summary for s in SEEDS]
    return [s["deliveries"] for s in sums], [s["throughput_per_hour"] for s in sums]


def test_learned_mappo_beats_epsilon_greedy_and_approaches_greedy(mappo_checkpoint):
    tick = scenario_for(size="tiny", robots=2, tempo="tick", max_steps=EPISODE)
    learned, _ = deliveries(tick, f"checkpoint:{mappo_checkpoint}")
    greedy, _ = deliveries(tick, "greedy")
    eps, _ = deliveries(tick, "epsilon_greedy")
    print(f"\ndeliveries per {EPISODE} s over seeds {SEEDS}: MAPPO {learned} (mean {np.mean(learned):.1f}), "
          f"greedy {greedy} (mean {np.mean(greedy):.1f}), epsilon-greedy {eps} (mean {np.mean(eps):.1f})")
    assert np.mean(learned) > np.mean(eps)
    assert np.mean(learned) >= GREEDY_FRACTION * np.mean(greedy)


def test_production_gap_of_the_learned_policy_is_measured(mappo_checkpoint, record_property):
    brain = f"checkpoint:{mappo_checkpoint}"
    tick = scenario_for(size="tiny", robots=2, tempo="tick", max_steps=EPISODE)
    # the same floor in the event tempo, robots and controller talking over a 50 ms (jitter 20 ms) lognormal link
    event = scenario_for(size="tiny", robots=2, tempo="event", max_steps=EPISODE, delay_mean=0.05, jitter=0.02)
    assert event.links.wireless.delay.dist == "lognormal" and event.links.wireless.delay.mean == 0.05
    d_tick, t_tick = deliveries(tick, brain)
    d_event, t_event = deliveries(event, brain)
    gap = {
        "deliveries_tick": float(np.mean(d_tick)), "deliveries_event": float(np.mean(d_event)),
        "throughput_tick": float(np.mean(t_tick)), "throughput_event": float(np.mean(t_event)),
    }
    gap["deliveries_drop"] = gap["deliveries_tick"] - gap["deliveries_event"]
    gap["throughput_drop_frac"] = 1.0 - gap["throughput_event"] / gap["throughput_tick"]
    print(f"\nproduction gap (tick -> event, 50 ms lognormal wireless): deliveries {gap['deliveries_tick']:.1f} -> "
          f"{gap['deliveries_event']:.1f} (drop {gap['deliveries_drop']:.1f}); throughput/h {gap['throughput_tick']:.1f} -> "
          f"{gap['throughput_event']:.1f} (drop {100 * gap['throughput_drop_frac']:.1f}%)")
    for k, v in gap.items():
        record_property(k, v)
        assert isinstance(v, float) and math.isfinite(v), k
    assert gap["deliveries_tick"] > 0  # the gap is relative to a policy that works
