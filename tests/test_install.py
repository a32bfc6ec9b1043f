"""A regular (non-editable) install works next to a user's own ``models`` package.

desim installs its model, policy, network and dashboard folders as
``desim.models`` and friends, so a user's project with its own top-level
``models`` package must still import both and run a shipped scenario, with the
same result as this source tree gives in-process.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "warehouse-tiny-event.toml"
SEED, UNTIL = 1, 60.0

USER_SCRIPT = textwrap.dedent('''
    import json
    import sys
    from pathlib import Path

    import models  # the user's own package, not desim's
    import desim
    import desim.models
    from desim.app.runner import run
    from desim.app.scenario import load

    site, scenario = Path(sys.argv[1]).resolve(), sys.argv[2]
    assert models.NAME == "user models", models.__file__
    assert Path(models.__file__).resolve().parent.parent == Path(__file__).resolve().parent, models.__file__
    sc = load(scenario)
    summary = run(sc, seed={seed}, until={until}, file=scenario).summary
    # every desim module this run used came from the scratch install
    outside = sorted(name for name, mod in list(sys.modules.items())
                     if (name == "desim" or name.startswith("desim.")) and getattr(mod, "__file__", None)
                     and not Path(mod.__file__).resolve().is_relative_to(site))
    assert not outside, outside
    assert Path(desim.__file__).resolve().is_relative_to(site), desim.__file__
    assert Path(desim.models.__file__).resolve().is_relative_to(site), desim.models.__file__
    print(json.dumps({{"deliveries": summary.get("deliveries"), "trace_hash": summary["trace_hash"],
                      "desim": desim.__file__}}))
''').format(seed=SEED, until=UNTIL)


def test_regular_install_runs_a_scenario_beside_a_user_models_package(regular_install, tmp_path):
    site, proj = regular_install, tmp_path / "proj"
    assert (site / "desim" / "__init__.py").is_file()
    assert not (site / "models").exists()  # desim's models live inside desim

    (proj / "models").mkdir(parents=True)
    (proj / "models" / "__init__.py").write_text('NAME = "user models"\n')
    (proj / "script.py").write_text(USER_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH")}
    env["PYTHONPATH"] = str(site)  # the scratch install wins over the venv's editable one
    out = subprocess.run([sys.executable, "script.py", str(site), str(SCENARIO)], cwd=proj, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got["desim"]).resolve().is_relative_to(site.resolve())

    from desim.app.runner import run
    from desim.app.scenario import load

    want = run(load(SCENARIO), seed=SEED, until=UNTIL, file=str(SCENARIO)).summary
    assert got["trace_hash"] == want["trace_hash"]
    assert got["deliveries"] == want.get("deliveries")
