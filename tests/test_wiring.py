"""The wiring layer does each job once per run, and finds models, sections and brains in registries."""
import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from desim import registry, scenario as kernel_scenario
from desim.app import runner
from desim.app.cli import app
from desim.app.scenario import load
from desim.models.warehouse import layout as layout_mod
from desim.models.warehouse.scenario import WarehouseCfg
from desim.network import topology as T
from desim.network.config import LinksCfg, TopologyCfg
from desim.policies.config import TrainConfig
from desim.policies.spec import BrainSpec, check_brain

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


class Count:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *a, **kw):
        self.calls += 1
        return self.fn(*a, **kw)


@pytest.mark.parametrize("brain", [None, "epsilon_greedy:0.1"])
def test_one_run_validates_each_section_once_and_builds_layout_topology_brain_once(monkeypatch, tmp_path, brain):
    counts = {}

    def spy(obj, name, key):
        c = Count(getattr(obj, name))
        monkeypatch.setattr(obj, name, c)
        counts[key] = c

    spy(kernel_scenario.scenario_type(), "model_validate", "scenario")  # every section is validated inside it
    for cls in (WarehouseCfg, LinksCfg, TopologyCfg, TrainConfig):  # ... and never on its own
        spy(cls, "model_validate", cls.__name__)
    layouts = Count(layout_mod.Layout.__init__)  # every way of making a floor ends in one constructor call
    monkeypatch.setattr(layout_mod.Layout, "__init__", lambda self, *a, **kw: layouts(self, *a, **kw))
    spy(T, "warehouse", "topology")
    spy(runner, "prepare", "prepare")
    made = []
    for name in ("greedy", "epsilon_greedy"):
        entry = registry.policies.get(name)
        c = Count(entry.make)
        made.append(c)
        monkeypatch.setitem(registry.policies._items, name, dataclasses.replace(entry, make=c))

    args = ["run", str(SCENARIOS / "warehouse-tiny-event.toml"), "--until", "60", "--json", "--store", str(tmp_path / "s.duckdb")]
    if brain:
        args += ["--brain", brain]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["deliveries"] >= 0 and summary["brain"] == (brain or "greedy")

    assert counts["scenario"].calls == 1
    assert all(counts[c.__name__].calls == 0 for c in (WarehouseCfg, LinksCfg, TopologyCfg, TrainConfig))
    assert layouts.calls == 1
    assert counts["topology"].calls == 1
    assert sum(c.calls for c in made) == 1


def test_sections_are_typed_and_registered_by_their_owners():
    sc = load(SCENARIOS / "warehouse-small-event.toml")
    assert isinstance(sc.warehouse, WarehouseCfg) and isinstance(sc.links, LinksCfg)
    owners = {name: spec.owner for name, spec in registry.sections.items()}
    assert owners["warehouse"] == "desim.models.warehouse" and owners["links"] == "desim.network"
    assert owners["train"] == "desim.policies"
    assert runner.model_of(sc).section == "warehouse"


def test_a_model_copy_is_checked_again_and_a_loaded_scenario_is_not():
    sc = load(SCENARIOS / "warehouse-tiny.toml")
    plan = runner.prepare(sc)
    assert runner.prepare(sc) is plan
    bigger = sc.model_copy(update={"warehouse": sc.warehouse.model_copy(update={"robots": 3})})
    assert runner.prepare(bigger) is not plan and len(runner.prepare(bigger).graph) > len(plan.graph)


def test_brain_specs_are_parsed_in_one_place():
    assert BrainSpec.parse("checkpoint:runs/x.pt#argmax") == BrainSpec("checkpoint", "runs/x.pt", "argmax")
    assert str(BrainSpec.parse("epsilon_greedy:0.3")) == "epsilon_greedy:0.3"
    for bad, words in [("nope", "unknown brain"), ("epsilon_greedy:2", "[0, 1]"), ("greedy:3", "takes no argument"),
                       ("checkpoint:/no/such.pt", "no checkpoint"), ("mappo", "learner, not a brain")]:
        with pytest.raises(ValueError, match=None) as e:
            check_brain(bad)
        assert words in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_section_is_one_line():
    with pytest.raises(kernel_scenario.ScenarioError) as e:
        kernel_scenario.parse('name = "x"\n[warehose]\nrobots = 2\n', "f.toml")
    msg = str(e.value)
    assert msg.startswith("f.toml: warehose: unknown section: no loaded plugin defines [warehose]; did you mean [warehouse]?")
    assert "DESIM_PLUGINS" in msg and "\n" not in msg
    with pytest.raises(kernel_scenario.ScenarioError) as e:  # a misspelt scalar is still an unknown field
        kernel_scenario.parse('name = "x"\nsed = 2\n', "f.toml")
    assert str(e.value) == "f.toml: sed: unknown field"


# sections that work on a model, with a smallest valid body (the test fails on a new one it does not know)
REQUIRING = {"pipeline": "[pipeline]\n", "inventory": "[inventory]\n", "tools": "[tools]\n", "train": "[train]\n",
             "tool_faults": '[[tool_faults]]\nat = 1.0\nduration = 2.0\ntool = "price_check"\nkind = "error_500"\n'}


def test_a_section_without_the_model_it_works_on_is_refused_not_ignored():
    """The class of bug: a network-only file with [pipeline] (or any section that needs a model)
    ran as if the section were not there."""
    requiring = {name for name, sec in registry.sections.items() if sec.requires}
    assert requiring == set(REQUIRING), "give the new section a smallest body in REQUIRING"
    base = 'name = "net"\nuntil = 5.0\n[topology]\nkind = "star"\n'
    for name, body in REQUIRING.items():
        sc = kernel_scenario.parse(base + body, "f.toml")
        with pytest.raises(kernel_scenario.ScenarioError) as e:
            runner.prepare(sc, "f.toml")
        assert str(e.value) == f"f.toml: {name}: needs a [{registry.sections.get(name).requires}] section (it works on that model)"
    runner.prepare(kernel_scenario.parse(base, "f.toml"), "f.toml")  # without them it runs
