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
pages = [
    st.Page(_PAGES / "runs.py", title="Runs", icon=":material/list:", url_path="runs", default=True),
    st.Page(_PAGES / "convergence.py", title="Convergence", icon=":material/trending_up:", url_path="convergence"),
    st.Page(_PAGES / "contention.py", title="Contention", icon=":material/grid_on:", url_path="contention"),
    st.Page(_PAGES / "network.py", title="Network", icon=":material/lan:", url_path="network"),
    st.Page(_PAGES / "whatif.py", title="What-if", icon=":material/science:", url_path="what-if"),
    st.Page(_PAGES / "capacity.py", title="Capacity", icon=":material/stacked_line_chart:", url_path="capacity"),
]
page = st.navigation(pages)

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
