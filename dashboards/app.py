"""desim dashboard: ``desim dash [--store PATH] [--port N]`` (or
``DESIM_STORE=PATH streamlit run dashboards/app.py``).

A Streamlit multipage app over the results store; each page is a script in
``dashboards/views/``. See docs/dashboard.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # `streamlit run dashboards/app.py` puts only dashboards/ on the path
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from desim.dashboards import common as C  # noqa: E402
from desim.dashboards import data as D  # noqa: E402

st.set_page_config(page_title="desim dashboard", page_icon=":material/warehouse:", layout="wide")

_PAGES = Path(__file__).resolve().parent / "views"  # not "pages/": Streamlit would also serve those on their own
# (script, title, icon, url path): one line per page, in the sidebar's order. Streamlit serves the default
# page at / whatever its url_path, so the default is a small home page and every other page has its own path.
PAGES = [
    ("home.py", "Home", ":material/home:", "home"),
    ("runs.py", "Runs", ":material/list:", "runs"),
    ("convergence.py", "Convergence", ":material/trending_up:", "convergence"),
    ("overtime.py", "Over time", ":material/timeline:", "over-time"),
    ("utilisation.py", "Utilisation", ":material/donut_large:", "utilisation"),
    ("floor.py", "Floor", ":material/play_circle:", "floor"),
    ("contention.py", "Contention", ":material/grid_on:", "contention"),
    ("network.py", "Network", ":material/lan:", "network"),
    ("whatif.py", "What-if", ":material/science:", "what-if"),
    ("capacity.py", "Capacity", ":material/stacked_line_chart:", "capacity"),
    ("faults.py", "Faults", ":material/bug_report:", "faults"),
    ("credit.py", "Credit", ":material/balance:", "credit"),
    ("tables.py", "Tables", ":material/table:", "tables"),  # any run's tables, whatever its model
]
pages = [st.Page(_PAGES / script, title=title, icon=icon, url_path=path, default=(i == 0))
         for i, (script, title, icon, path) in enumerate(PAGES)]
page = st.navigation(pages, expanded=True)  # every page in the sidebar, no "View N more"

all_runs = C.runs()
C.init_selection(all_runs)
with st.sidebar:
    st.caption(f"store `{D.store_path()}`")
    running = sum(r.get("status") == "running" for r in all_runs)
    st.caption(f"{len(all_runs)} runs" + (f", {running} running" if running else ""))
    if C.selected():
        st.caption("comparing: " + ", ".join(f"`{r}`" for r in C.selected()))
    if st.button("Reload data", icon=":material/refresh:", key="reload"):
        st.cache_data.clear()

page.run()
