"""The dashboard in a real browser: the test starts the app, headless Chromium
(Debian's ``chromium`` + ``chromium-driver``, driven by Selenium) loads every page,
waits for the charts, checks the key elements and saves screenshots.

Screenshots go to the test's temp dir; with ``DESIM_SCREENSHOTS=DIR`` they are
also copied there (``DESIM_SCREENSHOTS=docs/screenshots`` refreshes the docs).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from dashboard_support import ROBOTS_SWEEP, ROOT, ToyTrainer, fill_store, record_sweep  # noqa: E402

WAIT = 45  # seconds any one wait may take
SERVER_START = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dashboard_server(store: Path, log_path: Path):
    """`desim dash` on ``store``, the real command a user runs (it becomes Streamlit: its defaults are
    what these tests check), until its health check answers; yields ``(base URL, port)``; stopped after."""
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", STREAMLIT_SERVER_FILE_WATCHER_TYPE="none")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "desim.app.cli", "dash", "--store", str(store), "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer in {SERVER_START} s")
            time.sleep(0.3)
        yield base, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    out = tmp_path_factory.mktemp("screenshots")
    yield out
    extra = os.environ.get("DESIM_SCREENSHOTS")
    if extra:
        dst = Path(extra)
        dst.mkdir(parents=True, exist_ok=True)
        for p in sorted(out.glob("*.png")):
            shutil.copy(p, dst / p.name)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash-browser")
    store = tmp / "store.duckdb"
    # longer runs when refreshing the docs' screenshots (the partition is at 60 s either way)
    until = 900.0 if os.environ.get("DESIM_SCREENSHOTS") else 240.0
    ids = fill_store(store, tmp, until=until)
    # a real sweep for the Capacity page: robots on the tiny floor, which saturates (finer and longer for the docs)
    sweep = dict(ROBOTS_SWEEP, reps=3, until=600.0, grid={"warehouse.robots": [2, 4, 6, 8, 12, 16, 20, 24]}) \
        if os.environ.get("DESIM_SCREENSHOTS") else ROBOTS_SWEEP
    ids["sweep"] = record_sweep(store, tmp, **sweep)
    with dashboard_server(store, tmp / "server.log") as (base, port):
        from desim.store import Store

        def frames(run_id: str) -> list:
            return Store(store).table("floor_frames", run_id).to_pylist()

        yield {"base": base, "store": store, "ids": ids, "log": tmp / "server.log", "port": port,
               "store_frames": frames}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(arg)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


# --------------------------------------------------------------------------- helpers


def wait_for(driver, what, timeout: float = WAIT, message: str = ""):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: what(d))
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout} s waiting for {message or what}") from None


def idle(driver) -> bool:
    """The script run has finished: no 'running' indicator, no skeletons left."""
    running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
    skeletons = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSkeleton"]')
    return not running and not skeletons


def open_page(driver, server, path: str, title: str, charts: int):
    driver.get(f"{server['base']}/{path}")
    try:
        wait_for(driver, lambda d: any(h.text.strip() == title for h in d.find_elements(By.TAG_NAME, "h1")),
                 message=f"the page title {title!r}")
        wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".vega-embed canvas, .vega-embed svg")) >= charts,
                 message=f"{charts} charts drawn on {path}")
        wait_for(driver, idle, message=f"{path} to finish running")
    except AssertionError as e:
        where = server["log"].parent / f"failed-{title}.png"
        driver.save_screenshot(str(where))
        raise AssertionError(f"{e} (screenshot {where}, server log {server['log']})") from None
    time.sleep(0.5)  # let vega finish painting before a screenshot
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'), \
        driver.find_element(By.CSS_SELECTOR, '[data-testid="stException"]').text


def metrics(driver) -> dict[str, str]:
    out = {}
    for m in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]'):
        label = m.find_element(By.CSS_SELECTOR, '[data-testid="stMetricLabel"]').text.strip()
        value = m.find_element(By.CSS_SELECTOR, '[data-testid="stMetricValue"]').text.strip()
        out[label] = value
    return out


def shot(driver, shots: Path, name: str) -> Path:
    """Screenshot of the whole page: the window grows to the main area's height first."""
    height = driver.execute_script(
        "const m = document.querySelector('[data-testid=\"stMain\"]'); return m ? m.scrollHeight : 0;")
    size = driver.get_window_size()
    if height and height + 40 > size["height"]:
        driver.set_window_size(size["width"], min(int(height) + 40, 5000))
        time.sleep(0.8)  # charts that stretch re-render at the new size
        wait_for(driver, idle, message="the resized page to settle")
    p = shots / f"{name}.png"
    driver.save_screenshot(str(p))
    driver.set_window_size(size["width"], size["height"])
    assert p.stat().st_size > 10_000
    return p


# --------------------------------------------------------------------------- tests


def app_pages() -> list[tuple[str, str, str, str]]:
    """app.py's PAGES (script, title, icon, path), read without running Streamlit."""
    import ast

    tree = ast.parse((ROOT / "dashboards" / "app.py").read_text())
    return next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", None) == "PAGES")


def test_every_page_opens_by_its_path(server, browser):
    """Every page in app.py's list answers at its own path with its own title (no 'Page not found')."""
    for script, title, _icon, path in app_pages():
        want = "desim dashboard" if script == "home.py" else title
        for url in ([""] if script == "home.py" else [path]):  # the default page lives at / (Streamlit ignores its path)
            open_page(browser, server, url, want, charts=0)
            assert "Page not found" not in browser.find_element(By.TAG_NAME, "body").text, url


def page_text(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text


def test_every_page_renders(server, browser, shots):
    ids = server["ids"]
    # Home, at /: the store's contents and a link to every page
    open_page(browser, server, "", "desim dashboard", charts=0)
    m = metrics(browser)
    assert m["Runs in the store"] == str(len(ids)) and m["Training runs"] == "5"
    nav = [a.text.splitlines()[-1] for a in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a')]
    pages = app_pages()
    assert nav == [title for _s, title, _i, _p in pages], nav
    assert nav[:10] == ["Home", "Runs", "Convergence", "Over time", "Utilisation", "Floor", "Contention", "Network",
                        "What-if", "Capacity"], nav
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAppDeployButton"]')  # no Deploy button
    assert "Deploy" not in browser.find_element(By.CSS_SELECTOR, "body").text
    shot(browser, shots, "home")

    # Runs, by its own path: one table per kind, and with runs picked in the URL the comparison charts
    picked = f"{ids['partitioned']},{ids['warehouse-small-event.toml:1']},{ids['warehouse-small-event.toml:2']}"
    open_page(browser, server, f"runs?runs={picked}", "Runs", charts=3)
    m = metrics(browser)
    assert m["Runs shown"] == f"{len(ids)} of {len(ids)}"  # the sweep is a run too
    assert len(browser.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')) >= 3
    text = page_text(browser)
    assert "Simulation runs" in text and "Training runs" in text and "Page not found" not in text
    shot(browser, shots, "runs")

    open_page(browser, server, "convergence", "Convergence", charts=5)
    assert metrics(browser)["Groups"] == "3"
    assert "1 unfinished run(s) left out of the means, drawn dashed" in page_text(browser)  # (tables draw on a canvas)
    shot(browser, shots, "convergence")

    open_page(browser, server, f"over-time?runs={picked}", "Over time", charts=4)
    text = page_text(browser)
    assert "warehouse-small-event-early-partition · seed 3" in text  # labels say what differs
    shot(browser, shots, "over-time")

    open_page(browser, server, f"utilisation?runs={ids['partitioned']}", "Utilisation", charts=2)
    assert metrics(browser)["Bottleneck"] in ("blocked", "waiting_obs", "waiting_command", "idle")
    shot(browser, shots, "utilisation")

    # the runs picked in the URL carry over: Contention opens the first one: heatmap, deadlocks and faults
    open_page(browser, server, f"contention?runs={picked}", "Contention", charts=2)
    m = metrics(browser)
    assert int(m["Deliveries"]) > 0 and int(m["Deadlocks"]) > 0 and "Blocked moves" in m
    from desim.store import Store

    want = Store(server["store"]).get_run(ids["partitioned"])["summary"]["throughput_per_hour"]
    assert m["Throughput / h"] == f"{want:,.1f}"  # the first picked run: the partitioned one
    shot(browser, shots, "contention")

    open_page(browser, server, f"network?runs={ids['network']}", "Network", charts=8)
    m = metrics(browser)
    assert m["Links cut at this time"] == "1"  # the slider starts at the first fault: zone-1 split from the core
    text = browser.find_element(By.CSS_SELECTOR, '[data-testid="stAlertContentSuccess"]').text
    assert "sent + duplicated" in text
    assert "drops by reason per" in page_text(browser)
    shot(browser, shots, "network")

    # Credit, by its path: no study in this store, so the page names the command that makes one
    open_page(browser, server, "credit", "Credit", charts=0)
    text = page_text(browser)
    assert "No studies in this store yet" in text and "desim study credit scenarios/train-tiny.toml" in text


def test_the_floor_plays(server, browser, shots):
    """The Floor page by its path: press Play and the canvas moves by itself (no rerun of the script)."""
    ids = server["ids"]
    open_page(browser, server, f"floor?runs={ids['warehouse-small-event.toml:1']}", "Floor", charts=0)
    frame = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, '[data-testid="stIFrame"], iframe'),
                     message="the player's frame")
    browser.switch_to.frame(frame)
    try:
        canvas = wait_for(browser, lambda d: d.find_element(By.ID, "floor"), message="the canvas")
        n = int(browser.find_element(By.ID, "frames").text)
        assert n == len(server["store_frames"](ids["warehouse-small-event.toml:1"]))
        assert browser.find_element(By.ID, "frame").text == "1"
        start = canvas.get_attribute("data-positions")
        pixels = browser.execute_script("return arguments[0].toDataURL();", canvas)
        browser.execute_script("document.getElementById('speed').value = '60';")
        browser.find_element(By.ID, "play").click()
        time.sleep(3)
        frame_no = int(browser.find_element(By.ID, "frame").text)
        assert frame_no > 60, frame_no  # 3 s at 60x is 180 simulated seconds: well past frame 60 (0.5 s each)
        assert canvas.get_attribute("data-positions") != start
        assert browser.execute_script("return arguments[0].toDataURL();", canvas) != pixels
        browser.find_element(By.ID, "play").click()  # pause: the frame stays
        held = browser.find_element(By.ID, "frame").text
        time.sleep(0.6)
        assert browser.find_element(By.ID, "frame").text == held
        browser.find_element(By.ID, "heat").click()  # the contention heatmap layer
    finally:
        browser.switch_to.default_content()
    shot(browser, shots, "floor")


def test_capacity_page(server, browser, shots):
    """The Capacity page by its path: a chart per headline metric with intervals, the saturation point,
    the findings, where robots' time goes, the paired differences."""
    from desim.app.sweep import SWEEP_POINTS, summarise
    from desim.store import Store

    store = Store(server["store"])
    run = store.get_run(server["ids"]["sweep"])
    rep = summarise(dict(run["config"], name=run["scenario"]), run["run_id"],
                    store.table(SWEEP_POINTS, run["run_id"]).to_pylist())
    assert rep["knee"] is not None
    open_page(browser, server, "capacity", "Capacity", charts=4)  # 3 metrics and where time goes
    m = metrics(browser)
    assert m["Saturation point"] == f"robots = {rep['knee']['x']:g}", m
    assert m["Runs finished"] == f"{rep['runs']} of {rep['runs']}"
    main = browser.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
    assert "Findings" in main and rep["findings"][0] in main
    assert "Where robots' time goes" in main and "Bottleneck at the saturation point" in main
    assert "Differences against a baseline point" in main
    assert len(browser.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')) >= 3
    shot(browser, shots, "capacity")


def test_whatif_runs_and_compares(server, browser, shots):
    from desim.store import Store

    open_page(browser, server, "what-if", "What-if", charts=0)
    before = len(Store(server["store"]).list_runs())
    # two more robots (the slider moves by keyboard); the default length covers the base's partition
    # the slider's range input is visually hidden (react-aria): focus it, then the arrow keys go to it
    robots = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSlider"] input[aria-label="Robots"]')
    browser.execute_script("arguments[0].focus();", robots)
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT).perform()
    wait_for(browser, lambda d: "robots = 6" in d.find_element(By.TAG_NAME, "body").text, message="robots = 6")
    wait_for(browser, idle, message="the rerun after the slider")
    # the default length covers the base's partition and its order peak; 3 replications per arm
    assert browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Simulated s"]').get_attribute("value") == "2700.00"
    assert browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Replications"]').get_attribute("value") == "3"
    button = wait_for(browser, lambda d: next((b for b in d.find_elements(By.TAG_NAME, "button")
                                               if b.text.strip().endswith("Run what-if")), None),
                      message="the Run what-if button")
    button.click()
    wait_for(browser, lambda d: any("vs baseline" in e.text for e in
                                    d.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentSuccess"]')),
             timeout=300, message="the what-if result")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".vega-embed canvas, .vega-embed svg")) >= 2,
             message="the comparison charts")
    wait_for(browser, idle, message="the what-if page to settle")
    time.sleep(0.5)
    m = metrics(browser)
    assert "throughput / h" in m and "latency p95 (s)" in m and "deadlocks" in m
    main = browser.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
    assert "Differences over 3 paired replications, with their 95% intervals" in main
    assert "seeds 1..3 in both arms" in main
    runs = Store(server["store"]).list_runs()
    assert len(runs) == before + 6  # three baselines and three what-ifs
    from desim.dashboards.whatif import recorded_changes

    assert recorded_changes(runs[0]["scenario_text"]) == {"robots": 6} and runs[0]["config"]["until"] == 2700
    assert sorted(r["seed"] for r in runs[:6]) == [1, 1, 2, 2, 3, 3]
    shot(browser, shots, "what-if")


def test_convergence_updates_live_without_reload(server, browser, shots):
    """A training run writing to the store: the page's fragment picks up new steps by itself."""
    from desim.store import Store

    store = Store(server["store"])
    run_id = store.begin_run("train", scenario="toy-climbing-game", seed=7, brain="reinforce_live",
                             config={"algo": "reinforce_live"})
    try:
        tr = ToyTrainer("reinforce_live", 7)
        store.append(run_id, "train_curves", tr.rows(10))
        open_page(browser, server, "convergence", "Convergence", charts=5)
        label = "Latest step (running)"
        wait_for(browser, lambda d: label in metrics(d), message="the running run")
        first = int(metrics(browser)[label].replace(",", ""))
        browser.execute_script("window.__desim_marker = 42;")  # gone if the page reloads
        store.append(run_id, "train_curves", tr.rows(30))
        wait_for(browser, lambda d: int(metrics(d).get(label, "0").replace(",", "")) > first,
                 timeout=20, message="the fragment to show the new steps")
        assert browser.execute_script("return window.__desim_marker;") == 42
    finally:
        store.finish_run(run_id)


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a socket listening on ``port``."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            local, state = ln.split()[1], ln.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                out.add(addr)
    return out


def test_desim_dash_listens_on_localhost_only_by_default(server):
    assert _listening(server["port"]) == {"0100007F"}  # 127.0.0.1, and nothing else


def test_desim_dash_on_all_interfaces_warns_and_listens_there(tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "desim.app.cli", "dash", "--store", str(tmp_path / "s.duckdb"),
                             "--port", str(port), "--host", "0.0.0.0"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, STREAMLIT_SERVER_FILE_WATCHER_TYPE="none"), start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START
        while not _listening(port) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.3)
        assert _listening(port) == {"00000000"}, (tmp_path / "server.log").read_text()[-2000:]
        text = (tmp_path / "server.log").read_text()
        assert "warning" in text and "without authentication" in text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
