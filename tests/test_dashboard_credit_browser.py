"""The Credit page in a real browser (headless Chromium driven by Selenium, as in
tests/test_dashboard_browser.py, whose helpers and browser fixture it reuses): `desim dash` on a store
holding a credit study, the page opens by its path with its title and charts, the arms table is there,
and a screenshot is saved (``DESIM_SCREENSHOTS=docs/screenshots`` refreshes the docs' one)."""
from __future__ import annotations

from test_dashboard_browser import (browser, dashboard_server, metrics, open_page,  # noqa: F401
                                    page_text, shot, shots)

import pytest  # noqa: E402

from test_dashboard_credit import CREDIT_ARMS, credit_study  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("credit-browser")
    store = tmp / "store.duckdb"
    rid = credit_study(store)
    with dashboard_server(store, tmp / "server.log") as (base, _port):
        yield {"base": base, "store": store, "log": tmp / "server.log", "run_id": rid}


def test_the_credit_page_renders_the_study(server, browser, shots):  # noqa: F811
    # the curves, the final return per seed, one traceability scatter per arm, the tick-vs-event bars
    open_page(browser, server, "credit", "Credit", charts=3 + len(CREDIT_ARMS))
    m = metrics(browser)
    assert m["Arms"] == str(len(CREDIT_ARMS)) and m["Seeds per arm"] == "2"
    text = page_text(browser)
    assert "Arms: measured against rated" in text and "Traceability: credit assigned against true contribution" in text
    assert "Performance: tick against event tempo" in text
    shot(browser, shots, "credit")
