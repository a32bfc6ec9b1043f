"""The Tables page in a real browser (headless Chromium driven by Selenium, as in
tests/test_dashboard_browser.py, whose helpers and browser fixture it reuses): `desim dash` on a store holding
a real run of the tutorial's clientserver model (a plugin: the dashboard itself needs none), /tables opens
the run's ``cs_requests`` table with its rows, a text search narrows them, and a screenshot is saved
(``DESIM_SCREENSHOTS=docs/screenshots`` refreshes the docs' one)."""
from __future__ import annotations

import pytest

from test_dashboard_browser import (browser, dashboard_server, metrics, open_page, page_text,  # noqa: F401
                                    shot, shots, wait_for)
from test_dashboard_tables import record_clientserver  # noqa: E402

from dashboard_support import record  # noqa: E402
from desim.store import Store  # noqa: E402

By = pytest.importorskip("selenium.webdriver.common.by").By
Keys = pytest.importorskip("selenium.webdriver.common.keys").Keys


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tables-browser")
    store = tmp / "store.duckdb"
    record(store, "warehouse-small.toml", 1, 60.0)  # another model's run beside it
    rid = record_clientserver(store)
    with dashboard_server(store, tmp / "server.log") as (base, _port):
        yield {"base": base, "store": store, "log": tmp / "server.log", "run_id": rid}


def test_the_tables_page_shows_a_plugin_models_table(server, browser, shots):  # noqa: F811
    rid = server["run_id"]
    table = Store(server["store"]).table("cs_requests", rid).to_pandas()
    open_page(browser, server, f"tables?run={rid}&table=cs_requests", "Tables", charts=0)
    wait_for(browser, lambda d: metrics(d).get("Rows") == f"{len(table):,}", message="the table's row count")
    m = metrics(browser)
    assert m["Model"] == "clientserver" and m["Matching rows"] == f"{len(table):,}"
    picked = {label: browser.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]').get_attribute("value")
              for label in ("Run", "Table")}
    assert rid in picked["Run"] and picked["Table"] == f"cs_requests ({len(table):,} rows)", picked
    assert f"Download CSV ({len(table):,} rows)" in page_text(browser)
    grid = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')
    assert grid and grid[0].size["height"] > 100  # the preview is drawn

    # a text search narrows the rows: the requests to the server that was cut off
    n = int((table["server"] == "server-1").sum())
    assert 0 < n < len(table)
    box = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Search the text columns"]')
    box.send_keys("server-1", Keys.ENTER)
    wait_for(browser, lambda d: metrics(d).get("Matching rows") == f"{n:,}", message="the search to narrow the rows")
    assert f"Download CSV ({n:,} matching rows)" in page_text(browser)
    shot(browser, shots, "tables")
