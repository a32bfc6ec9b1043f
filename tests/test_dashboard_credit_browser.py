"""The Credit page in a real browser (headless Chromium driven by Selenium, as in
tests/test_dashboard_browser.py, whose helpers and browser fixture it reuses): `desim dash` on a store
holding a credit study made by the real `desim study credit`; the page opens by its path with its title,
its figures and charts, and a screenshot is saved (``DESIM_SCREENSHOTS=docs/screenshots`` refreshes the
docs' one, from a longer study with MAPPO and VDN)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_dashboard_browser import (ROOT, browser, dashboard_server, metrics, open_page,  # noqa: F401
                                    page_text, shot, shots)


# refreshing the docs' screenshot: a study long enough to learn something, with both kinds of learner
DOCS_STUDY = ["study", "credit", "scenarios/train-tiny.toml", "--algos", "mappo,vdn", "--seeds", "3", "--steps",
              "32768", "--envs", "16", "--episodes", "16", "--until", "600"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, credit_study_store):
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("credit-browser")
    store = credit_study_store  # the study the AppTest reads too (read only)
    if os.environ.get("DESIM_SCREENSHOTS") and os.environ.get("DESIM_CREDIT_STORE"):
        store = Path(os.environ["DESIM_CREDIT_STORE"])  # the docs' screenshot from a study already made
    elif os.environ.get("DESIM_SCREENSHOTS"):  # the docs' screenshot: a longer study of its own
        store = tmp / "store.duckdb"
        done = subprocess.run([sys.executable, "-m", "desim.app.cli", *DOCS_STUDY, "--store", str(store)], cwd=ROOT,
                              capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    from desim.store import Store

    (run,) = [r for r in Store(store).list_runs() if r["kind"] == "study"]
    arms = Store(store).table("study_arms", run["run_id"]).to_pandas()
    with dashboard_server(store, tmp / "server.log") as (base, _port):
        yield {"base": base, "store": store, "log": tmp / "server.log", "run_id": run["run_id"], "arms": arms}


def test_the_credit_page_renders_the_study(server, browser, shots):  # noqa: F811
    arms = server["arms"]
    # the curves, the final return per seed, one traceability scatter per arm, the tick-vs-event bars
    open_page(browser, server, "credit", "Credit", charts=3 + len(arms))
    m = metrics(browser)
    assert m["Arms"] == str(len(arms)) and m["Seeds per arm"] == str(int(arms["seeds"].max()))
    text = page_text(browser)
    assert "Arms: measured against rated" in text and "Traceability: credit assigned against true contribution" in text
    assert "Performance: tick against event tempo" in text
    shot(browser, shots, "credit")
