"""Tables: any stored table of any run, whatever its model: preview, filter, download as CSV."""
from __future__ import annotations

import numpy as np
import streamlit as st

from desim.dashboards import browse as B
from desim.dashboards import common as C
from desim.dashboards import data as D

st.title("Tables")
rs = C.runs()
if not rs:
    C.empty("No runs in this store yet.",
            "Record one with `desim run SCENARIO --store PATH` (any model), then reload.")
    st.stop()

asked = {k: st.query_params.get(k) for k in ("run", "table")}  # a link to one run's table (the Runs page's)
for k in asked:
    if k in st.query_params:
        del st.query_params[k]  # asked once: the widgets are the user's after that
run = C.pick_run("Run", rs, key="tables_run", help="any run: simulation (any model), training, sweep, study",
                 prefer=asked["run"])
rid = run["run_id"]
ver = C.version(rs)

tables = B.run_tables(D.run_tables(D.store_path(), run))  # a run still writing: counted from its parts
if tables.empty:
    C.empty(f"Run `{rid}` stored no tables" + (" yet (still running)." if run.get("status") == "running" else "."))
    st.stop()
rows = dict(zip(tables["table"], tables["rows"]))
names = list(rows)
if st.session_state.get("tables_table") not in names or asked["table"] in names:
    st.session_state.pop("tables_table", None)
name = st.selectbox("Table", names, key="tables_table", format_func=lambda n: f"{n} ({rows[n]:,} rows)",
                    index=names.index(asked["table"]) if asked["table"] in names else 0,
                    help="the tables this run stored, with their row counts")
df = C.table(name, [rid], ver)

# ------------------------------------------------------------------ filter
NONE = "(no column filter)"
f1, f2, f3 = st.columns([2, 3, 3])
if st.session_state.get("tables_column") not in [NONE] + list(df.columns):
    st.session_state.pop("tables_column", None)
column = f1.selectbox("Filter on column", [NONE] + list(df.columns), key="tables_column")
spec: dict = {}
if column != NONE:
    s = df[column]
    kind = B.column_kind(s)
    where = f"{name}:{column}"  # a widget per table and column: a new column starts unfiltered
    finite = s[np.isfinite(s.astype("float64").to_numpy(na_value=np.nan))] if kind == "number" else s
    if kind == "number" and finite.empty:
        f2.caption(f"`{column}` has no finite value.")
    elif kind == "number":
        integer = str(s.dtype).lower().startswith(("int", "uint"))
        lo, hi = (int(finite.min()), int(finite.max())) if integer else (float(finite.min()), float(finite.max()))
        if lo < hi:
            got = f2.slider(f"{column} between", lo, hi, (lo, hi), key=f"tables_range:{where}",
                            step=None if integer else (hi - lo) / 1000)
            spec = {"column": column, "lo": got[0] if got[0] > lo else None, "hi": got[1] if got[1] < hi else None}
        else:
            f2.caption(f"`{column}` is {lo:g} in every row.")
    else:
        values = B.distinct_values(s)
        if values is not None:
            got = f2.multiselect(f"{column} is one of", values, key=f"tables_values:{where}",
                                 placeholder="any value")
            spec = {"column": column, "values": got}
        else:
            got = f2.text_input(f"{column} contains", key=f"tables_contains:{where}",
                                placeholder="text (case ignored)")
            spec = {"column": column, "contains": got}
search = f3.text_input("Search the text columns", key="tables_search", placeholder="text (case ignored)")
if search:
    spec["search"] = search
shown = B.filter_rows(df, **spec)
filtered = len(shown) < len(df)

m = st.columns(4)
m[0].metric("Rows", f"{len(df):,}")
m[1].metric("Columns", f"{len(df.columns):,}")
m[2].metric("Matching rows", f"{len(shown):,}")
m[3].metric("Model", D.model_of(run) or "–", help="the model the run simulated (its summary's `model`, "
            "else told from its figures and tables)")

n = st.select_slider("Rows to preview", B.PREVIEW_ROWS, value=100, key="tables_preview")
st.dataframe(shown.head(n), hide_index=True, width="stretch", key="tables_preview_table")
st.caption(f"The first {min(n, len(shown)):,} of {len(shown):,} " + ("matching rows." if filtered else "rows.")
           + " The download has them all.")


@st.cache_data(ttl=600, show_spinner=False, max_entries=8)
def _csv(path: str, ver: tuple, table: str, run_id: str, spec: dict) -> bytes:
    return B.to_csv(B.filter_rows(C.table(table, [run_id], ver), **spec))


st.download_button(f"Download CSV ({len(shown):,} {'matching ' if filtered else ''}rows)",
                   data=_csv(D.store_path(), ver, name, rid, spec), file_name=B.file_name(rid, name, filtered),
                   mime="text/csv", icon=":material/download:", key="tables_download", on_click="ignore")

with st.expander("Columns"):
    st.dataframe(B.columns_frame(df), hide_index=True, width="stretch")
    st.caption("The same rows in Python: `Store(path).table(" + repr(name) + ", " + repr(rid) + ").to_pandas()` "
               f"(`desim.store.Store`); every table of the run as files: `desim runs export {rid} --store PATH "
               "--out DIR --format csv`.")
