"""The floor in motion: a run's recorded frames as compact JSON and a self-contained canvas player.

The player is one HTML page (no external scripts) rendered with
``st.iframe``: play, pause, scrub and speed live in the
browser, so playing never reruns the Streamlit script, and a 1-hour run of
the small floor (7,200 frames) plays smoothly: robots glide between frames
(linear interpolation of their cells), carried shelves ride on their robots,
requested shelves and goals are coloured, and the contention heatmap is an
optional layer. The page's ``#frame`` element and the canvas's
``data-frame``/``data-positions``/``data-draws`` attributes say which frame is
drawn and how many times the canvas was painted (the browser test and
``bench/dashboard_load.py``, which measures the frame rate, read them).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd


def _ints(text: str | None) -> list[int]:
    return [int(x) for x in text.split(",")] if text else []


def frames_json(frames: pd.DataFrame, shelves: pd.DataFrame, floor: pd.DataFrame, t_end: float | None = None) -> dict:
    """The player's data: floor size, goals, shelf spots and heat per cell (from the run's ``contention``
    rows), frames (time, each robot's cell, heading and carried shelf, the requested shelves) and
    shelves (each one's cell at 0 s and its put-downs), flat integer lists throughout."""
    frames = frames.sort_values("t")
    w, h = int(floor["x"].max()) + 1, int(floor["y"].max()) + 1
    cells = (floor["y"].astype(int) * w + floor["x"].astype(int)).to_numpy()
    kind = dict(zip(cells.tolist(), floor.get("cell", pd.Series(["highway"] * len(floor))).fillna("highway")))
    heat = np.zeros(w * h, dtype=int)
    heat[cells] = (floor["blocked"].fillna(0).astype(int) + floor["collisions"].fillna(0).astype(int)).to_numpy()
    sh = shelves.sort_values(["t", "shelf"]) if not shelves.empty else shelves
    first = sh[sh["t"] <= 0.0] if not sh.empty else sh
    n_shelves = int(sh["shelf"].max()) + 1 if not sh.empty else 0
    shelf0 = [-1] * n_shelves
    for s, c in zip(first.get("shelf", []), first.get("cell", [])):
        shelf0[int(s)] = int(c)
    later = sh[sh["t"] > 0.0] if not sh.empty else sh
    return {
        "w": w, "h": h,
        "goals": sorted(c for c, k in kind.items() if k == "goal"),
        "spots": sorted(c for c, k in kind.items() if k == "shelf"),
        "heat": heat.tolist(),
        "t": [round(float(t), 3) for t in frames["t"]],
        "end": float(t_end if t_end is not None else (frames["t"].max() if not frames.empty else 0.0)),
        "cell": [_ints(x) for x in frames["cell"]],
        "head": [_ints(x) for x in frames["heading"]],
        "cargo": [_ints(x) for x in frames["cargo"]],
        "req": [_ints(x) for x in frames["requests"]],
        "shelf0": shelf0,
        "shelfEv": [[round(float(t), 3), int(s), int(c)] for t, s, c in zip(later.get("t", []), later.get("shelf", []),
                                                                           later.get("cell", []))],
    }


def player_html(data: dict, heat: bool = False, speed: float = 10.0, px: int | None = None) -> str:
    """The player page for :func:`frames_json`'s data (``heat``: start with the heatmap layer on)."""
    cell = px or max(10, min(36, 900 // max(data["w"], 1), 520 // max(data["h"], 1)))
    payload = json.dumps(data, separators=(",", ":"))
    speeds = [1, 5, 10, 30, 60, 120, 300]
    options = "".join(f'<option value="{s}"{" selected" if s == speed else ""}>{s}×</option>' for s in speeds)
    return (_HTML.replace("__DATA__", payload).replace("__CELL__", str(cell)).replace("__OPTIONS__", options)
            .replace("__HEAT__", "checked" if heat else ""))


def height(data: dict, px: int | None = None) -> int:
    cell = px or max(10, min(36, 900 // max(data["w"], 1), 520 // max(data["h"], 1)))
    return data["h"] * cell + 90


_HTML = r"""<!doctype html><html><head><meta charset="utf-8"><style>
body{margin:0;font-family:"Source Sans Pro",sans-serif;font-size:14px;color:#31333f}
#bar{display:flex;gap:10px;align-items:center;margin:6px 0}
button{border:1px solid #ccc;border-radius:6px;background:#fff;padding:3px 12px;cursor:pointer}
#scrub{flex:1}
.key{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px;border-radius:2px}
</style></head><body>
<div id="bar"><button id="play">▶ Play</button><input id="scrub" type="range" min="0" value="0" step="any">
<span id="clock">0.0 s</span><label>speed <select id="speed">__OPTIONS__</select></label>
<label><input id="heat" type="checkbox" __HEAT__> contention heatmap</label></div>
<canvas id="floor"></canvas>
<div style="margin-top:4px;color:#666">frame <span id="frame">0</span> of <span id="frames">0</span>
<span class="key" style="background:#1f77b4"></span>robot <span class="key" style="background:#8c6d31"></span>shelf
<span class="key" style="background:#e377c2"></span>requested shelf <span class="key" style="background:#2ca02c"></span>goal</div>
<script>
const D = __DATA__, C = __CELL__;
const cv = document.getElementById("floor"), g = cv.getContext("2d");
cv.width = D.w * C; cv.height = D.h * C;
const scrub = document.getElementById("scrub"), clock = document.getElementById("clock");
const T = D.t, N = T.length, end = Math.max(D.end, N ? T[N - 1] : 0);
scrub.max = end; document.getElementById("frames").textContent = N;
const heatMax = Math.max(1, ...D.heat);
let now = 0, playing = false, last = null, shelves = D.shelf0.slice(), applied = 0, draws = 0;
function frameAt(t) { let lo = 0, hi = N - 1; if (!N || t < T[0]) return 0;
  while (lo < hi) { const m = (lo + hi + 1) >> 1; if (T[m] <= t) lo = m; else hi = m - 1; } return lo; }
function shelvesAt(t) { if (applied > 0 && D.shelfEv[applied - 1][0] > t) { shelves = D.shelf0.slice(); applied = 0; }
  while (applied < D.shelfEv.length && D.shelfEv[applied][0] <= t) { const e = D.shelfEv[applied++]; shelves[e[1]] = e[2]; } }
function xy(c) { return [c % D.w, Math.floor(c / D.w)]; }
function rect(c, col, inset) { const [x, y] = xy(c); g.fillStyle = col; g.fillRect(x * C + inset, y * C + inset, C - 2 * inset, C - 2 * inset); }
function draw() {
  const k = frameAt(now), k2 = Math.min(k + 1, N - 1);
  const f = (N && k2 > k && T[k2] > T[k]) ? Math.min(1, Math.max(0, (now - T[k]) / (T[k2] - T[k]))) : 0;
  shelvesAt(now);
  g.fillStyle = "#fafafa"; g.fillRect(0, 0, cv.width, cv.height);
  if (document.getElementById("heat").checked) for (let c = 0; c < D.heat.length; c++) if (D.heat[c] > 0)
    rect(c, `rgba(214,39,40,${0.12 + 0.7 * D.heat[c] / heatMax})`, 0);
  g.strokeStyle = "#e6e6e6"; g.lineWidth = 1;
  for (const c of D.spots) { const [x, y] = xy(c); g.strokeRect(x * C + 0.5, y * C + 0.5, C - 1, C - 1); }
  for (const c of D.goals) rect(c, "#2ca02c", 2);
  const cargo = N ? D.cargo[k] : [], req = new Set(N ? D.req[k] : []), carried = new Set(cargo.filter(s => s >= 0));
  for (let s = 0; s < shelves.length; s++) if (shelves[s] >= 0 && !carried.has(s)) rect(shelves[s], req.has(s) ? "#e377c2" : "#8c6d31", 3);
  const pos = [];
  if (N) for (let i = 0; i < D.cell[k].length; i++) {
    const [x0, y0] = xy(D.cell[k][i]), [x1, y1] = xy(D.cell[k2][i] ?? D.cell[k][i]);
    const x = x0 + (x1 - x0) * f, y = y0 + (y1 - y0) * f; pos.push([+x.toFixed(2), +y.toFixed(2)]);
    if (cargo[i] >= 0) { g.fillStyle = req.has(cargo[i]) ? "#e377c2" : "#8c6d31"; g.fillRect(x * C + 2, y * C + 2, C - 4, C - 4); }
    g.beginPath(); g.arc(x * C + C / 2, y * C + C / 2, C * 0.32, 0, 2 * Math.PI); g.fillStyle = "#1f77b4"; g.fill();
    const d = D.head[k][i], dx = [0, 0, -1, 1][d], dy = [-1, 1, 0, 0][d];
    g.beginPath(); g.moveTo(x * C + C / 2, y * C + C / 2); g.lineTo(x * C + C / 2 + dx * C * 0.42, y * C + C / 2 + dy * C * 0.42);
    g.strokeStyle = "#fff"; g.lineWidth = 2; g.stroke();
  }
  document.getElementById("frame").textContent = N ? k + 1 : 0;
  cv.dataset.frame = k; cv.dataset.positions = JSON.stringify(pos); cv.dataset.draws = ++draws;
  clock.textContent = now.toFixed(1) + " s of " + end.toFixed(0) + " s"; scrub.value = now;
}
function tick(ts) { if (!playing) return; if (last !== null) now += (ts - last) / 1000 * +document.getElementById("speed").value;
  last = ts; if (now >= end) { now = end; playing = false; document.getElementById("play").textContent = "▶ Play"; }
  draw(); if (playing) requestAnimationFrame(tick); }
document.getElementById("play").onclick = () => { playing = !playing; last = null;
  if (playing && now >= end) now = 0;
  document.getElementById("play").textContent = playing ? "❚❚ Pause" : "▶ Play"; if (playing) requestAnimationFrame(tick); };
scrub.oninput = () => { now = +scrub.value; draw(); };
document.getElementById("heat").onchange = draw;
draw();
</script></body></html>"""
