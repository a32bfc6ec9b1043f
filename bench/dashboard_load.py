"""Dashboard page load time on an 18-run and a 200-run store (issue 15's goal: interactive within 3 s).

    .venv/bin/python bench/dashboard_load.py [--out DIR] [--no-browser] [--reuse]

Builds the stores (real short runs; the 200-run store copies the 18 real runs' rows through the store
API until it holds 200 runs), then measures every page two ways and prints a table:

- ``script s``: Streamlit's AppTest runs the page's script to the end (the server-side time
  before the page is complete), cold (caches cleared) and warm (the same page again);
- ``browser s``: headless Chromium opens the page by its path until its title, its charts and the
  end of the script run are on screen (Streamlit's status widget gone): time to interactive as a
  user sees it, after one warm-up visit of the server. ``first`` is the first pass over the pages
  in a fresh browser (the first page with a chart also loads the Vega library, once per browser
  session); ``again`` a second pass (the browser has Vega; the server's caches are warm).

And the Floor player on a 1-hour run of the small floor (event tempo, 7,200 frames): its data's
size, the page's time to interactive, and the frames painted per second while it plays at 60x.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from dashboard_support import (ROBOTS_SWEEP, fill_store, partitioned_small, record,  # noqa: E402
                               record_sweep)

PAGES = [("home", None, "desim dashboard", 0), ("runs", "runs", "Runs", 0), ("convergence", "convergence", "Convergence", 4),
         ("over-time", "overtime", "Over time", 4), ("utilisation", "utilisation", "Utilisation", 2),
         ("floor", "floor", "Floor", 0), ("contention", "contention", "Contention", 2),
         ("network", "network", "Network", 6), ("what-if", "whatif", "What-if", 0), ("capacity", "capacity", "Capacity", 3)]
EXTRA = [("warehouse-small-event.toml", 4, "greedy"), ("warehouse-small-event.toml", 5, "random"),
         ("warehouse-tiny-event.toml", 1, None), ("warehouse-tiny-event.toml", 2, None),
         ("warehouse-medium.toml", 1, None), ("network-partition.toml", 2, None)]


def build_18(path: Path, tmp: Path) -> None:
    """18 real runs: 5 warehouse and network, 5 training (one interrupted), 6 more warehouse and
    network runs, a what-if-sized small run and a sweep."""
    fill_store(path, tmp, until=600.0)
    for scenario, seed, brain in EXTRA:
        record(path, scenario, seed, 120.0 if scenario.startswith("network") else 600.0, brain)
    record(path, "", 7, 600.0, "greedy", path=partitioned_small(tmp))
    record_sweep(path, tmp, **ROBOTS_SWEEP)


def build_200(src: Path, dst: Path) -> None:
    """``src``'s runs copied (catalog row and every table's rows, through the store API) until 200 runs."""
    from desim.store import Store

    a, b = Store(src), Store(dst)
    runs = a.list_runs()
    n = 0
    while n < 200:
        for r in runs:
            if n >= 200:
                break
            rid = b.begin_run(r["kind"], scenario=r["scenario"], scenario_text=r.get("scenario_text"), seed=r["seed"],
                              brain=r.get("brain"), config=r.get("config"))
            for table in (r.get("tables") or {}):
                b.append(rid, table, a.table(table, r["run_id"]).drop_columns(["run_id"]))
            b.finish_run(rid, summary=r.get("summary") or {}, status=r["status"] if r["status"] != "running" else "complete")
            n += 1


def script_times(store: Path) -> dict[str, tuple[float, float]]:
    """Per page: AppTest run time cold (caches cleared) and warm (the page again)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["DESIM_STORE"] = str(store)
    app = str(ROOT / "dashboards" / "app.py")
    out = {}
    for path, script, _title, _charts in PAGES:
        st.cache_data.clear()
        times = []
        for _ in range(2):
            at = AppTest.from_file(app, default_timeout=120)
            t0 = time.perf_counter()
            at.run()
            if script:
                at.switch_page(f"views/{script}.py").run()
            times.append(time.perf_counter() - t0)
            assert not at.exception, (path, at.exception)
        out[path] = (times[0], times[1])
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dashboard_and_browser(store: Path, *chrome_args: str):
    """`desim dash` on ``store`` and a headless Chromium (extra ``chrome_args``), once the server's port
    answers; yields ``(driver, base URL)``; both stopped after."""
    from selenium import webdriver

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "desim.app.cli", "dash", "--store", str(store), "--port", str(port)],
                            cwd=ROOT, env=dict(os.environ, STREAMLIT_SERVER_FILE_WATCHER_TYPE="none"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", *chrome_args, "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(
        executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the dashboard did not start") from None
                time.sleep(0.3)
        yield driver, f"http://127.0.0.1:{port}"
    finally:
        driver.quit()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def browser_times(store: Path) -> dict[str, tuple[float, float]]:
    """Per page: seconds from navigation to its title, charts and the end of the script run."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with dashboard_and_browser(store, "--disable-gpu") as (driver, base):
        def load(path: str, title: str, charts: int) -> float:
            t0 = time.perf_counter()
            driver.get(f"{base}/{path if path != 'home' else ''}")
            WebDriverWait(driver, 120, poll_frequency=0.05).until(
                lambda d: any(h.text.strip() == title for h in d.find_elements(By.TAG_NAME, "h1"))
                and len(d.find_elements(By.CSS_SELECTOR, ".vega-embed canvas, .vega-embed svg")) >= charts
                and not d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
                and not d.find_elements(By.CSS_SELECTOR, '[data-testid="stSkeleton"]'))
            return time.perf_counter() - t0

        load("home", "desim dashboard", 0)  # warm-up: the server imports the app on its first session
        first = {path: load(path, title, charts) for path, _s, title, charts in PAGES}
        return {path: (first[path], load(path, title, charts)) for path, _s, title, charts in PAGES}


def floor_playback(store: Path) -> dict:
    """The Floor page on the store's one run (a 1-hour small-floor run): load time, payload, fps."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with dashboard_and_browser(store) as (driver, base):
        driver.get(f"{base}/")
        WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.TAG_NAME, "h1"))
        t0 = time.perf_counter()
        driver.get(f"{base}/floor")
        frame = WebDriverWait(driver, 120, poll_frequency=0.05).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "iframe"))[0]
        driver.switch_to.frame(frame)
        WebDriverWait(driver, 120, poll_frequency=0.05).until(lambda d: d.find_elements(By.ID, "floor")
                                                              and d.find_element(By.ID, "frames").text not in ("", "0"))
        loaded = time.perf_counter() - t0
        frames = int(driver.find_element(By.ID, "frames").text)
        size = len(driver.execute_script("return document.documentElement.outerHTML;"))
        canvas = driver.find_element(By.ID, "floor")
        driver.execute_script("document.getElementById('speed').value = '60';")
        d0 = int(canvas.get_attribute("data-draws"))
        driver.find_element(By.ID, "play").click()
        t1 = time.perf_counter()
        time.sleep(4.0)
        d1, f1 = int(canvas.get_attribute("data-draws")), int(canvas.get_attribute("data-frame"))
        fps = (d1 - d0) / (time.perf_counter() - t1)
        return {"frames": frames, "html_kb": size / 1024, "load_s": loaded, "fps": fps, "frame_after_4s": f1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "desim-dashboard-load")
    ap.add_argument("--no-browser", action="store_true", help="only the script times")
    ap.add_argument("--reuse", action="store_true", help="reuse the stores already in --out")
    args = ap.parse_args()
    out: Path = args.out
    s18, s200, hour = out / "store-18.duckdb", out / "store-200.duckdb", out / "store-hour.duckdb"
    if not (args.reuse and s18.exists() and s200.exists() and hour.exists()):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        t0 = time.perf_counter()
        build_18(s18, out)
        build_200(s18, s200)
        record(hour, "warehouse-small-event.toml", 1, 3600.0, "greedy")
        print(f"stores built in {time.perf_counter() - t0:.0f} s under {out}")
    from desim.store import Store

    rows = []
    for name, store in (("18 runs", s18), ("200 runs", s200)):
        n = len(Store(store).list_runs())
        assert (n == 18) if name == "18 runs" else (n == 200), (name, n)
        st = script_times(store)
        br = {} if args.no_browser else browser_times(store)
        for path, *_ in PAGES:
            rows.append((name, path, st[path][0], st[path][1], br.get(path)))
    print(f"\n{'store':<9} {'page':<12} {'script cold s':>13} {'script warm s':>13} {'browser first s':>15} "
          f"{'browser again s':>15}")
    for name, path, cold, warm, b in rows:
        f, a = ("", "") if b is None else (f"{b[0]:.2f}", f"{b[1]:.2f}")
        print(f"{name:<9} {path:<12} {cold:>13.2f} {warm:>13.2f} {f:>15} {a:>15}")
    if args.no_browser:
        print(f"\nslowest page: {max(r[2] for r in rows):.2f} s (script, cold); goal: 3 s")
    else:
        print(f"\nslowest page in the browser: {max(r[4][0] for r in rows):.2f} s on the first pass, "
              f"{max(r[4][1] for r in rows):.2f} s again; goal: 3 s")
    if not args.no_browser:
        fp = floor_playback(hour)
        print(f"\nFloor player, 1-hour small-floor run: {fp['frames']:,} frames, page {fp['html_kb']:.0f} KB, "
              f"interactive in {fp['load_s']:.2f} s, {fp['fps']:.0f} frames painted per second at 60x "
              f"(frame {fp['frame_after_4s']:,} after 4 s)")


if __name__ == "__main__":
    main()
