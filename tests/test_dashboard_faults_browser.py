"""The Faults page in a real browser (headless Chromium driven by Selenium, as in
tests/test_dashboard_browser.py, whose helpers and browser fixture it reuses): `desim dash` on a store
holding a real failure suite, the page loads with its charts, the figures are the store's, and a screenshot
is saved (``DESIM_SCREENSHOTS=docs/screenshots`` refreshes the docs' one)."""
from __future__ import annotations

import os

import pytest

from test_dashboard_browser import (ROOT, browser, dashboard_server, metrics, open_page,  # noqa: F401
                                    page_text, shot, shots)

from desim.app import eval as E  # noqa: E402
from desim.store import Store  # noqa: E402

SCENARIO = ROOT / "scenarios" / "warehouse-pipeline.toml"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults-browser")
    store = tmp / "store.duckdb"
    until = 1800.0 if os.environ.get("DESIM_SCREENSHOTS") else 600.0
    cases = None if os.environ.get("DESIM_SCREENSHOTS") else ["500_storm", "kill_switch"]
    results, _rows, _windows, _sc, rid = E.run_suite(SCENARIO, guard="both", until=until, cases=cases,
                                                     store=Store(store))
    with dashboard_server(store, tmp / "server.log") as (base, _port):
        yield {"base": base, "store": store, "log": tmp / "server.log", "run_id": rid, "results": results}


def test_the_faults_page_renders_the_suite(server, browser, shots):  # noqa: F811
    results = server["results"]
    # the suite's throughput change, and for the first case: decisions with the guard on and off, the breakers
    open_page(browser, server, "faults", "Faults", charts=4)
    m = metrics(browser)
    assert m["Passed"] == f"{sum(r['passed'] for r in results)} of {len(results)}"
    assert m["Orders lost"] == "0" and m["Runs (case × arm)"] == str(len(results))
    text = page_text(browser)
    assert "The suite" in text and "Guard on against guard off" in text and "The guard's decisions over time" in text
    assert "guard on" in text and "guard off" in text
    shot(browser, shots, "faults")
