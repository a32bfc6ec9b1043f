"""Streamlit glue shared by the pages: cached reads, the run selection, empty states.

Caching: the runs list is cached for a couple of seconds; every table read is
cached on (store path, store version, table, runs), where the version
(:func:`dashboards.data.store_version`) changes when a run starts or finishes
and, while a run is still writing, every couple of seconds. So new runs show
up by themselves and old results are not re-read on every click.
"""
from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from desim.dashboards import data as D
from desim.store import StoreError

SELECTED = "selected_runs"  # session-state key shared by every page (not a widget key)


@st.cache_data(ttl=2.0, show_spinner=False, max_entries=8)
def _runs(path: str, stamp: tuple) -> list[dict]:
    return D.list_runs(path)


def runs() -> list[dict]:
    """Every run in the store, newest first (a dead writer's run shows as 'crashed').
    Re-read when the catalog file changes, and at least every 2 s."""
    path = D.store_path()
    if not os.path.exists(path):  # say which store, and a command that writes to that very store
        empty(f"No store at `{path}` yet: record a run into it with "
              f"`desim run scenarios/warehouse-small-event.toml --store {path}`, then reload.",
              "Or start the dashboard on another store: `desim dash --store PATH`.")
        st.stop()
    try:
        return _runs(path, D.catalog_stamp(path))
    except StoreError as e:  # a file that is not a store: one line on every page, nothing written
        st.error(str(e))
        st.stop()


def version(rs: list[dict] | None = None) -> tuple:
    return D.store_version(runs() if rs is None else rs)


@st.cache_data(ttl=600, show_spinner=False, max_entries=64)
def _table(path: str, ver: tuple, name: str, run_ids: tuple[str, ...] | None) -> pd.DataFrame:
    return D.read_table(path, name, run_ids)


def table(name: str, run_ids: list[str] | tuple[str, ...] | None = None, ver: tuple | None = None) -> pd.DataFrame:
    ids = None if run_ids is None else tuple(sorted(run_ids))
    return _table(D.store_path(), ver if ver is not None else version(), name, ids)


def run_by_id(rs: list[dict], run_id: str | None) -> dict | None:
    return next((r for r in rs if r["run_id"] == run_id), None)


# --------------------------------------------------------------------------- selection


def init_selection(rs: list[dict]) -> list[str]:
    """The runs picked to compare: kept in session state, mirrored in the URL (``?runs=a,b``)."""
    known = {r["run_id"] for r in rs}
    if SELECTED not in st.session_state:
        from_url = st.query_params.get("runs", "")
        st.session_state[SELECTED] = [r for r in from_url.split(",") if r]
    sel = [r for r in st.session_state[SELECTED] if r in known] if known else list(st.session_state[SELECTED])
    st.session_state[SELECTED] = sel
    sync_url()
    return sel


def sync_url() -> None:
    sel = st.session_state.get(SELECTED) or []
    if sel:
        if st.query_params.get("runs") != ",".join(sel):
            st.query_params["runs"] = ",".join(sel)
    elif "runs" in st.query_params:
        del st.query_params["runs"]


def selected() -> list[str]:
    return list(st.session_state.get(SELECTED) or [])


def set_selected(ids: list[str]) -> None:
    st.session_state[SELECTED] = list(ids)
    sync_url()


def pick_run(label: str, candidates: list[dict], key: str, help: str | None = None,
             needs: str = "what this page shows", explain=None, prefer: str | None = None) -> dict | None:
    """A selectbox over ``candidates``, starting at the first run picked on the Runs page (or at
    ``prefer``, a run a link asked for). A picked run this page cannot show is named, with why
    (``needs``; or ``explain(run)``'s line where it gives one), rather than silently replaced by another."""
    if not candidates:
        return None
    ids = [r["run_id"] for r in candidates]
    picked = selected()
    sel = [i for i in picked if i in ids]
    if prefer in ids:  # the widget starts afresh at the run asked for
        st.session_state.pop(key, None)
        sel = [prefer]
    elif picked and not sel:
        rs = {r["run_id"]: r for r in runs()}
        first = rs.get(picked[0], {"run_id": picked[0]})
        line = explain(first) if explain is not None and picked[0] in rs else None
        st.warning((line + " Or pick one of the runs below.") if line else
                   f"Run `{picked[0]}` ({first.get('kind', '?')} of {first.get('scenario', '?')}), picked on the Runs "
                   f"page, cannot be shown here: it has no {needs}. Pick one of the runs below.",
                   icon=":material/warning:")
    if key in st.session_state and st.session_state[key] not in ids:
        del st.session_state[key]
    index = ids.index(sel[0]) if sel else 0
    labels = {r["run_id"]: D.run_label(r) for r in candidates}
    rid = st.selectbox(label, ids, index=index, key=key, format_func=lambda i: labels.get(i, i), help=help)
    return run_by_id(candidates, rid)


def page_run(accept, key: str, message: str, hint: str | None = None,
             needs: str = "what this page shows", explain=None) -> tuple[dict, list[dict]]:
    """A single-run page's opening: pick one of the runs ``accept`` takes, or show
    ``message`` (and ``hint``) as an empty state and stop. Returns ``(run, all runs)``.
    ``explain(run)``: the line for a picked run the page cannot show (None: the usual one)."""
    rs = runs()
    candidates = [r for r in rs if accept(r)]
    if not candidates:
        empty(message, hint)
        st.stop()
    return pick_run("Run", candidates, key=key, needs=needs, explain=explain), rs


WAREHOUSE_HINT = "Record one with `desim run scenarios/warehouse-small-event.toml --until 600`."


def _warehouse_explain(run: dict) -> str | None:
    return D.warehouse_only(run) if D.other_model(run) else None


def elsewhere_links(run: dict | None) -> None:
    """Links to the pages that show any model's runs: Tables (and Network, for a run with network data)."""
    cols = st.columns([1, 1, 6])
    cols[0].page_link("views/tables.py", label="Tables", icon=":material/table:")
    if run is not None and D.is_network(run):
        cols[1].page_link("views/network.py", label="Network", icon=":material/lan:")


def no_warehouse_runs(rs: list[dict]) -> None:
    """A warehouse page on a store with no warehouse run: with another model's runs in it, what the first
    picked (else the newest) of them is and where to look; else how to record a warehouse run. Stops."""
    others = [r for r in rs if D.other_model(r)]
    if others:
        by_id = {r["run_id"]: r for r in others}
        run = next((by_id[i] for i in selected() if i in by_id), others[0])
        empty(D.warehouse_only(run))
        elsewhere_links(run)
    else:
        empty("No warehouse runs in this store yet.", WAREHOUSE_HINT)
    st.stop()


def warehouse_run(key: str, needs: str) -> tuple[dict, list[dict]]:
    """A warehouse page's opening (Contention, Floor, Utilisation): pick a warehouse run. On a store
    without one, or for a picked run of another model, one line says what that run is and points to
    the pages for any model (never "record a warehouse run" to another model's user)."""
    rs = runs()
    if not any(D.is_warehouse(r) for r in rs):
        no_warehouse_runs(rs)
    return page_run(D.is_warehouse, key, "No warehouse runs in this store yet.", WAREHOUSE_HINT, needs=needs,
                    explain=_warehouse_explain)


def empty(message: str, hint: str | None = None) -> None:
    st.info(message + (f"\n\n{hint}" if hint else ""), icon=":material/info:")


def fmt(v, digits: int = 1, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    return f"{v:,}{unit}"
