"""Floor: a run played back from its recorded frames: robots, carried shelves, requested shelves and
goals; play, pause, scrub and speed in the browser (``st.iframe``) (the script does not rerun while it plays)."""
from __future__ import annotations

import streamlit as st

from desim.dashboards import common as C
from desim.dashboards import playback as P

st.title("Floor")
run, rs = C.warehouse_run("floor_run", needs="warehouse floor (it is not a warehouse run)")
rid = run["run_id"]
ver = C.version(rs)
s = run.get("summary") or {}
frames = C.table("floor_frames", [rid], ver)
if frames.empty:
    C.empty(f"Run `{rid}` recorded no playback frames" + (" yet (still running)." if run.get("status") == "running"
                                                          else " (recorded before desim kept them)."),
            "Record a new run: every `desim run` into a store keeps the floor every tick (tick tempo) or "
            "every half second (event tempo).")
    st.stop()
floor = C.table("contention", [rid], ver)
shelves = C.table("floor_shelves", [rid], ver)
t_end = float(s.get("sim_time") or frames["t"].max())


@st.cache_data(show_spinner=False, max_entries=8)
def _player(run_id: str, ver: tuple, heat: bool) -> tuple[str, int, int]:
    data = P.frames_json(frames, shelves, floor, t_end)
    return P.player_html(data, heat=heat), P.height(data), len(data["t"])


a, b = st.columns([3, 1])
heat = b.toggle("Start with the contention heatmap", value=False, key="floor_heat",
                help="cells shaded by blocked moves plus collisions over the whole run (also a checkbox in the player)")
html, h, n = _player(rid, ver, heat)
fl = s.get("floor") or {}
b.metric("Frames", f"{n:,}")
b.metric("Robots", s.get("robots", "?"))
b.caption(f"Floor `{fl.get('name', '?')}`, tempo `{s.get('tempo', '?')}`, brain `{s.get('brain', run.get('brain'))}`: "
          f"{t_end:g} simulated seconds, a frame every {t_end / max(n, 1):.2g} s. Blue: robots (the white tick is "
          "the heading); brown: shelves; pink: requested shelves; green: goals.")
with a:
    st.iframe(html, height=h)  # numbers only (frames_json), so no user text reaches the page's script
