"""Altair charts for the dashboard pages (pure functions: DataFrames in, charts out)."""
from __future__ import annotations

import altair as alt
import pandas as pd

METRIC_COLOURS = {"blocked": "oranges", "collisions": "reds", "both": "inferno"}
STATE_COLOURS = {"cut": "#d62728", "degraded": "#ff7f0e"}
CATEGORIES = alt.Scale(scheme="tableau10")  # distinct hues (the default theme's are shades of blue)
ROLE_COLOURS = alt.Scale(domain=["robot", "controller", "switch", "service", "agent", "unknown"],
                         range=["#1f77b4", "#2ca02c", "#7f7f7f", "#9467bd", "#ff7f0e", "#c7c7c7"])


def floor_heatmap(floor: pd.DataFrame, metric: str, paths: pd.DataFrame | None = None,
                  deadlocks_at: pd.DataFrame | None = None) -> alt.Chart:
    """Cells coloured by ``metric`` (blocked | collisions | both); shelves outlined,
    goals marked, robots' paths on top. y grows downwards (row 0 at the top)."""
    width, height = int(floor["x2"].max()), int(floor["y2"].max())
    px = 28 if height <= 20 else 18
    x = alt.X("x:Q", scale=alt.Scale(domain=[0, width], nice=False), axis=alt.Axis(title="x", tickMinStep=1))
    y = alt.Y("y:Q", scale=alt.Scale(domain=[0, height], reverse=True, nice=False), axis=alt.Axis(title="y (row)", tickMinStep=1))
    base = alt.Chart(floor).encode(x=x, y=y, x2="x2:Q", y2="y2:Q")
    heat = base.mark_rect(stroke="#ddd", strokeWidth=0.5).encode(
        color=alt.Color(f"{metric}:Q", scale=alt.Scale(scheme=METRIC_COLOURS.get(metric, "oranges")),
                        legend=alt.Legend(title=metric)),
        tooltip=["x:Q", "y:Q", "cell:N", "blocked:Q", "collisions:Q"],
    )
    shelves = alt.Chart(floor[floor["cell"] == "shelf"]).mark_rect(
        filled=False, stroke="#555", strokeWidth=1.2, opacity=0.9).encode(x=x, y=y, x2="x2:Q", y2="y2:Q")
    goals_df = floor[floor["cell"] == "goal"].assign(gx=lambda d: d["x"] + 0.5, gy=lambda d: d["y"] + 0.5)
    goals = alt.Chart(goals_df).mark_text(text="G", fontWeight="bold", color="#2ca02c", fontSize=14).encode(
        x=alt.X("gx:Q", scale=alt.Scale(domain=[0, width], nice=False)),
        y=alt.Y("gy:Q", scale=alt.Scale(domain=[0, height], reverse=True, nice=False)))
    layers = [heat, shelves, goals]
    if paths is not None and not paths.empty:
        layers.append(alt.Chart(paths).mark_line(strokeWidth=2, opacity=0.75, interpolate="step-after").encode(
            x=alt.X("cx:Q", scale=alt.Scale(domain=[0, width], nice=False)),
            y=alt.Y("cy:Q", scale=alt.Scale(domain=[0, height], reverse=True, nice=False)),
            color=alt.Color("robot:N", scale=alt.Scale(scheme="category10"), legend=alt.Legend(title="robot")),
            order="t:Q", detail="robot:N", tooltip=["robot:N", "t:Q", "x:Q", "y:Q"]))
    return alt.layer(*layers).resolve_scale(color="independent").properties(
        width=px * width, height=px * height, title="blocked moves and collisions per cell")


def deadlock_timeline(deadlocks: pd.DataFrame, faults: pd.DataFrame, t_end: float) -> alt.Chart:
    """Deadlocks as ticks over time (one row per robot), fault windows as shaded spans."""
    layers = []
    if not faults.empty:
        f = faults.assign(end=faults["end"].clip(upper=t_end))
        layers.append(alt.Chart(f).mark_rect(opacity=0.18, color="#d62728").encode(
            x=alt.X("start:Q", title="simulated time (s)", scale=alt.Scale(domain=[0, t_end])),
            x2="end:Q", tooltip=["fault:N", "target:N", "start:Q", "end:Q"]))
    if not deadlocks.empty:
        layers.append(alt.Chart(deadlocks).mark_tick(thickness=3).encode(
            x=alt.X("t:Q", title="simulated time (s)", scale=alt.Scale(domain=[0, t_end])),
            y=alt.Y("agent:N", title=None), color=alt.Color("type:N", scale=alt.Scale(domain=["wait_for_cycle", "stuck"], range=["#d62728", "#9467bd"]),
                            legend=alt.Legend(title="deadlock")),
            tooltip=["t:Q", "agent:N", "type:N"]))
    # a nominal y needs a step height (a fixed height squeezes the rows when the chart stretches)
    return alt.layer(*layers).properties(height=alt.Step(26) if not deadlocks.empty else 60,
                                         title="deadlocks (ticks) and faults (shaded)")


def timeseries(ts: pd.DataFrame, metric: str, colour: str = "run_id", faults: pd.DataFrame | None = None,
               title: str | None = None) -> alt.Chart:
    df = ts[ts["metric"] == metric]
    line = alt.Chart(df).mark_line(point=len(df) < 80).encode(
        x=alt.X("t:Q", title="simulated time (s)"), y=alt.Y("value:Q", title=metric),
        color=alt.Color(f"{colour}:N", scale=CATEGORIES, legend=alt.Legend(title=colour)),
        tooltip=[f"{colour}:N", "t:Q", "value:Q"])
    layers = [line]
    if faults is not None and not faults.empty:
        t_end = float(df["t"].max()) if not df.empty else 1.0
        f = faults.assign(end=faults["end"].clip(upper=t_end))
        layers.insert(0, alt.Chart(f).mark_rect(opacity=0.15, color="#d62728").encode(
            x="start:Q", x2="end:Q", tooltip=["fault:N", "target:N", "start:Q", "end:Q"]))
    return alt.layer(*layers).properties(height=240, title=title or metric)


def _tall(plot: int, df: pd.DataFrame, field: str, extra_rows: int = 0) -> int:
    """A chart's height with room for a one-column legend at the bottom: Streamlit fits the whole chart,
    legend included, into the height, so the plot keeps ``plot`` pixels only if the legend's rows are added."""
    rows = (df[field].nunique() if field in df and not df.empty else 0) + extra_rows
    return plot + 60 + 19 * rows


def _fault_spans(faults: pd.DataFrame | None, t_end: float) -> list:
    if faults is None or faults.empty:
        return []
    f = faults.assign(end=faults["end"].clip(upper=t_end))
    return [alt.Chart(f).mark_rect(opacity=0.13, color="#d62728").encode(
        x="start:Q", x2="end:Q", tooltip=["fault:N", "target:N", "start:Q", "end:Q"] + (["run:N"] if "run" in f else []))]


def over_time(df: pd.DataFrame, column: str, y_title: str, faults: pd.DataFrame | None, title: str,
              colour: str = "run") -> alt.Chart:
    """One line per run (labelled by what differs) against simulated time, faults shaded; the x axis
    ends at the longest run's end."""
    d = df.dropna(subset=[column])
    t_end = float(df["t"].max()) if not df.empty else 1.0
    line = alt.Chart(d).mark_line(strokeWidth=2, interpolate="monotone").encode(
        x=alt.X("t:Q", title="simulated time (s)", scale=alt.Scale(domain=[0, t_end], nice=False)),
        y=alt.Y(f"{column}:Q", title=y_title),
        color=alt.Color(f"{colour}:N", scale=CATEGORIES, legend=alt.Legend(title=None, orient="bottom", labelLimit=0,
                                                                            columns=1)),
        tooltip=[f"{colour}:N", alt.Tooltip("t:Q", format=".0f"), alt.Tooltip(f"{column}:Q", format=",.2f")])
    return alt.layer(*_fault_spans(faults, t_end), line).properties(height=_tall(200, d, colour), title=title)


def latency_over_time(df: pd.DataFrame, faults: pd.DataFrame | None, title: str, unit: str = "s",
                      dashes: tuple[str, ...] = ("p50", "p95", "p99"), dash_title: str = "percentile",
                      y_title: str | None = None) -> alt.Chart:
    """p50, p95 and p99 per run (column ``latency``, ``q`` the percentile): colour is the run, the dash
    the percentile (or whatever ``q`` holds: ``dashes`` names its values in order)."""
    d = df.dropna(subset=["latency"])
    t_end = float(df["t"].max()) if not df.empty else 1.0
    line = alt.Chart(d).mark_line(strokeWidth=1.8).encode(
        x=alt.X("t:Q", title="simulated time (s)", scale=alt.Scale(domain=[0, t_end], nice=False)),
        y=alt.Y("latency:Q", title=y_title or f"latency ({unit})"),
        color=alt.Color("run:N", scale=CATEGORIES, legend=alt.Legend(title=None, orient="bottom", labelLimit=0, columns=1)),
        strokeDash=alt.StrokeDash("q:N", scale=alt.Scale(domain=list(dashes), range=[[1, 0], [6, 3], [2, 2]][:len(dashes)]),
                                  legend=alt.Legend(title=dash_title, orient="bottom")),
        detail="run:N",
        tooltip=["run:N", "q:N", alt.Tooltip("t:Q", format=".0f"), alt.Tooltip("latency:Q", format=",.3f")])
    return alt.layer(*_fault_spans(faults, t_end), line).properties(height=_tall(200, d, "run", 2), title=title)


def topology(nodes: pd.DataFrame, edges: pd.DataFrame, title: str = "") -> alt.Chart:
    """Edges coloured by mean latency; cut edges red and dashed, degraded ones orange and dashed."""
    ax = None
    up = edges[edges["state"] == "up"]
    layers = [alt.Chart(up).mark_rule(strokeWidth=3).encode(
        x=alt.X("x:Q", axis=ax), y=alt.Y("y:Q", axis=ax), x2="x2:Q", y2="y2:Q",
        color=alt.Color("latency_ms:Q", scale=alt.Scale(scheme="viridis"),
                        legend=alt.Legend(title="mean latency (ms)")),
        tooltip=["u:N", "v:N", alt.Tooltip("latency_ms:Q", format=".2f"), "sent:Q", "state:N"])]
    for state, colour in STATE_COLOURS.items():
        part = edges[edges["state"] == state]
        if not part.empty:
            layers.append(alt.Chart(part).mark_rule(strokeWidth=3.5, strokeDash=[6, 4], color=colour).encode(
                x=alt.X("x:Q", axis=ax), y=alt.Y("y:Q", axis=ax), x2="x2:Q", y2="y2:Q",
                tooltip=["u:N", "v:N", alt.Tooltip("latency_ms:Q", format=".2f"), "sent:Q", "state:N"]))
    layers.append(alt.Chart(nodes).mark_circle(size=260, opacity=1, stroke="white", strokeWidth=1.5).encode(
        x=alt.X("x:Q", axis=ax), y=alt.Y("y:Q", axis=ax),
        fill=alt.Fill("role:N", scale=ROLE_COLOURS, legend=alt.Legend(title="role")), tooltip=["node:N", "role:N"]))
    layers.append(alt.Chart(nodes).mark_text(dy=-14, fontSize=10).encode(x="x:Q", y="y:Q", text="node:N"))
    return alt.layer(*layers).resolve_scale(color="independent").properties(height=460, title=title)


def delay_histogram(delays: pd.DataFrame, title: str) -> alt.Chart:
    df = delays.assign(delay_ms=delays["delay"] * 1e3)
    hist = alt.Chart(df).mark_bar(opacity=0.75).encode(
        x=alt.X("delay_ms:Q", bin=alt.Bin(maxbins=50), title="one-way delay (ms)"),
        y=alt.Y("count():Q", title="messages", stack=None), color=alt.Color("link:N", scale=CATEGORIES))
    return hist.properties(height=260, title=title)


def conservation_bar(df: pd.DataFrame) -> alt.Chart:
    d = df.assign(side=df["side"].map({"in": "sent + duplicated", "out": "delivered + dropped + in flight"}))
    return alt.Chart(d).mark_bar().encode(
        y=alt.Y("side:N", title=None), x=alt.X("count:Q", title="messages", stack="zero"),
        color=alt.Color("term:N", scale=CATEGORIES, legend=alt.Legend(title="term")),
        tooltip=["term:N", "count:Q"]).properties(height=alt.Step(34), title="message conservation")


def bands(df: pd.DataFrame, metric: str, x_title: str) -> alt.Chart:
    d = df[df["metric"] == metric]
    base = alt.Chart(d).encode(x=alt.X("x:Q", title=x_title), color=alt.Color("algo:N", scale=CATEGORIES))
    area = base.mark_area(opacity=0.22).encode(y=alt.Y("lo:Q", title=metric), y2="hi:Q")
    line = base.mark_line().encode(y="mean:Q", tooltip=["algo:N", "x:Q", "mean:Q", "lo:Q", "hi:Q", "n:Q"])
    return (area + line).properties(height=230, title=metric)


def credit_bars(df: pd.DataFrame, title: str = "per-agent credit") -> alt.Chart:
    """Each group's per-agent credit (last value, mean over its seeds); one scenario per chart."""
    colour = "group" if "group" in df else "algo"
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("agent:N", title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("mean(credit):Q", title="credit (last value, mean over seeds)"),
        color=alt.Color(f"{colour}:N", scale=CATEGORIES, legend=alt.Legend(title=colour, labelLimit=0, orient="bottom")),
        xOffset=f"{colour}:N", tooltip=[f"{colour}:N", "agent:N", "mean(credit):Q", "count():Q"],
    ).properties(height=_tall(200, df, colour, 1),
                 title=alt.TitleParams(title, orient="bottom", anchor="start", fontSize=13))  # on top it is clipped


def group_curves(bands: pd.DataFrame, lines: pd.DataFrame, metric: str, x_title: str, show_seeds: bool,
                 marks: pd.DataFrame | None = None) -> alt.Chart:
    """A metric per group: the mean over its seeds with a band; its seeds as thin lines (if
    ``show_seeds``); runs left out of the mean (interrupted, failed, crashed) dashed with their status;
    the rollback gate's promotions and rollbacks as vertical rules, green and red (``marks``)."""
    b = bands[bands["metric"] == metric]
    colour = alt.Color("group:N", scale=CATEGORIES, legend=alt.Legend(title="group", orient="bottom", labelLimit=0,
                                                                      columns=1))
    base = alt.Chart(b).encode(x=alt.X("x:Q", title=x_title), color=colour)
    layers = [base.mark_area(opacity=0.2).encode(y=alt.Y("lo:Q", title=metric), y2="hi:Q"),
              base.mark_line(strokeWidth=2.5).encode(y="mean:Q", tooltip=["group:N", "x:Q", "mean:Q", "lo:Q", "hi:Q",
                                                                          "n:Q"])]
    ln = lines[lines["metric"] == metric]
    xcol = "step" if x_title.startswith("environment") else "wall_s"
    if show_seeds:
        seeds = ln[ln["finished"]]
        if not seeds.empty:
            layers.append(alt.Chart(seeds).mark_line(strokeWidth=1, opacity=0.45).encode(
                x=f"{xcol}:Q", y="value:Q", color=colour, detail="run_id:N", tooltip=["line:N", f"{xcol}:Q", "value:Q"]))
    left = ln[~ln["finished"]]
    if not left.empty:
        layers.append(alt.Chart(left).mark_line(strokeWidth=1.5, strokeDash=[5, 3], opacity=0.9).encode(
            x=f"{xcol}:Q", y="value:Q", color=colour, detail="run_id:N", tooltip=["line:N", "status:N", f"{xcol}:Q",
                                                                               "value:Q"]))
        ends = left.sort_values(xcol).groupby("run_id", as_index=False).last()
        layers.append(alt.Chart(ends).mark_text(align="left", dx=4, fontSize=10).encode(
            x=f"{xcol}:Q", y="value:Q", text="status:N", color=colour))
    if marks is not None and not marks.empty:  # the gate's decisions: a vertical rule each, over the whole plot
        layers.append(alt.Chart(marks.dropna(subset=["x"])).mark_rule(strokeWidth=1.5, strokeDash=[3, 2], opacity=0.8).encode(
            x="x:Q",
            stroke=alt.Stroke("decision:N", scale=alt.Scale(domain=["promote", "rollback"], range=["#2ca02c", "#d62728"]),
                              legend=alt.Legend(title="rollback gate", orient="bottom")),
            tooltip=["group:N", "run_id:N", "step:Q", "decision:N", "reason:N"]))
    return alt.layer(*layers).resolve_scale(color="shared").properties(
        height=_tall(200, pd.concat([b[["group"]], ln[["group"]]]), "group", 2), title=metric)


def runs_bars(df: pd.DataFrame, metric: str) -> alt.Chart:
    """One horizontal bar per run, labelled by ``label`` (what differs, with the scenario), never cut off."""
    d = df if "label" in df else df.assign(label=[f"{s} · seed {x} · {b or ''}" for s, x, b in
                                                  zip(df["scenario"], df["seed"], df["brain"])])
    field = _field(metric)  # a dotted summary key (response_time.p50) is one column, not a nested field
    return alt.Chart(d).mark_bar().encode(
        y=alt.Y("label:N", title=None, sort=None, axis=alt.Axis(labelLimit=0)),
        x=alt.X(field, type="quantitative", title=None),
        color=alt.Color("label:N", scale=alt.Scale(domain=list(d["label"]), scheme="tableau10"), legend=None),
        tooltip=["run_id:N", "scenario:N", "seed:Q", "brain:N", alt.Tooltip(field, type="quantitative", title=metric)],
    ).properties(height=alt.Step(22), title=metric)


def _field(name: str) -> str:
    """A column name as a Vega-Lite field: dots and brackets escaped (else they address nested data)."""
    return "".join("\\" + ch if ch in ".[]" else ch for ch in name)


def capacity_metric(df: pd.DataFrame, metric: str, x_title: str, numeric_x: bool = True,
                    knee: float | None = None, blowup: float | None = None, lines_title: str | None = None) -> alt.Chart:
    """One metric against the swept parameter: the mean per point (a line per value of the second
    parameter, if any) with its confidence interval as error bars, the saturation point (knee) and
    the blow-up, if any, as vertical rules."""
    d = df[df["metric"] == metric]
    xt = "Q" if numeric_x else "O"
    x = alt.X(f"x:{xt}", title=x_title)
    colour = (alt.Color("line:N", scale=CATEGORIES, legend=alt.Legend(title=lines_title))
              if d["line"].nunique() > 1 else alt.value("#1f77b4"))
    tip = ["line:N", "x", alt.Tooltip("mean:Q", format=",.4g"), alt.Tooltip("low:Q", format=",.4g"),
           alt.Tooltip("high:Q", format=",.4g"), "n:Q"]
    base = alt.Chart(d).encode(x=x, color=colour)
    layers = [base.mark_rule(strokeWidth=2, opacity=0.6).encode(y=alt.Y("low:Q", title=metric), y2="high:Q",
                                                                tooltip=tip),
              base.mark_line(point=alt.OverlayMarkDef(size=50, filled=True)).encode(
                  y=alt.Y("mean:Q", title=metric), detail="line:N", tooltip=tip)]
    marks = []
    if knee is not None:
        marks.append({"x": knee, "what": f"saturation (knee) at {knee:g}", "colour": "#d62728"})
    if blowup is not None:
        marks.append({"x": blowup, "what": f"blow-up from {blowup:g}", "colour": "#ff7f0e"})
    if marks and numeric_x:
        m = pd.DataFrame(marks)
        rules = alt.Chart(m).mark_rule(strokeDash=[6, 4], strokeWidth=2).encode(
            x="x:Q", color=alt.Color("colour:N", scale=None), tooltip=["what:N"])
        text = alt.Chart(m).mark_text(align="left", dx=4, dy=-6, fontSize=11).encode(
            x="x:Q", y=alt.value(10), text="what:N", color=alt.Color("colour:N", scale=None))
        layers += [rules, text]
    return alt.layer(*layers).properties(height=260, title=metric)


TIME_COLOURS = alt.Scale(domain=["moving", "turning", "loading", "blocked", "waiting_obs", "waiting_command", "idle"],
                         range=["#2ca02c", "#98df8a", "#1f77b4", "#d62728", "#ff7f0e", "#9467bd", "#c7c7c7"])


def time_share_bars(shares: pd.DataFrame, x_title: str) -> alt.Chart:
    """Where robots' time goes: one stacked bar per point, a segment per state."""
    return alt.Chart(shares).mark_bar().encode(
        x=alt.X("tick:N", title=x_title, sort=None, axis=alt.Axis(labelAngle=0 if shares["tick"].str.len().max() < 8 else -40)),
        y=alt.Y("share:Q", title="share of robot time", stack="zero", axis=alt.Axis(format="%")),
        color=alt.Color("state:N", scale=TIME_COLOURS, legend=alt.Legend(title="state")),
        order=alt.Order("order:Q"),
        tooltip=["label:N", "state:N", alt.Tooltip("share:Q", format=".1%")],
    ).properties(height=260, title="where robots' time goes")


def diff_intervals(df: pd.DataFrame, title: str = "change from the baseline, with its 95% interval") -> alt.Chart:
    """Each figure's change from the baseline in percent of the baseline's mean, with its paired
    interval as a bar; green where significant and better, red where significant and worse, grey
    where not significant (the interval contains 0) or with no interval."""
    d = df[df["baseline"].notna() & df["what_if"].notna()].copy()
    d = d[d["baseline"].astype(float) != 0]
    scale = d["baseline"].astype(float).abs()
    d["change_pct"] = d["diff"].astype(float) / scale * 100
    d["low_pct"] = d["low"].astype(float) / scale * 100
    d["high_pct"] = d["high"].astype(float) / scale * 100

    def effect(row) -> str:
        sig = row["significant"]
        if sig is None or (isinstance(sig, float) and pd.isna(sig)):
            return "no interval"
        if not bool(sig):
            return "not significant"
        return "better" if (row["change_pct"] < 0) == bool(row["lower_better"]) else "worse"

    d["effect"] = [effect(r) for _, r in d.iterrows()] if not d.empty else []
    y = alt.Y("label:N", title=None, sort=None)
    colour = alt.Color("effect:N", scale=alt.Scale(domain=["better", "worse", "not significant", "no interval"],
                                                   range=["#2ca02c", "#d62728", "#9e9e9e", "#c7c7c7"]),
                       legend=alt.Legend(title=None, orient="bottom"))
    tip = ["label:N", "baseline:Q", "what_if:Q", alt.Tooltip("change_pct:Q", format="+.1f"),
           alt.Tooltip("low_pct:Q", format="+.1f"), alt.Tooltip("high_pct:Q", format="+.1f"), "effect:N"]
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#555").encode(x="x:Q")
    band = alt.Chart(d).mark_bar(height=10, opacity=0.35).encode(
        y=y, x=alt.X("low_pct:Q", title="change from the baseline (%)"), x2="high_pct:Q",
        color=colour, tooltip=tip)
    point = alt.Chart(d).mark_point(filled=True, size=90, shape="diamond").encode(
        y=y, x="change_pct:Q", color=colour, tooltip=tip)
    return alt.layer(zero, band, point).properties(height=alt.Step(26), title=title)


def utilisation_area(df: pd.DataFrame, faults: pd.DataFrame | None, t_end: float, title: str,
                     height: int = 260) -> alt.Chart:
    """Each window's share of robot time per state, stacked to 100% (x: the window's end), faults shaded."""
    order = {s: i for i, s in enumerate(TIME_COLOURS.domain)}
    d = df.assign(order=df["state"].map(order))
    area = alt.Chart(d).mark_area(interpolate="step-before").encode(
        x=alt.X("t:Q", title="simulated time (s)", scale=alt.Scale(domain=[0, t_end], nice=False)),
        y=alt.Y("share:Q", title="share of robot time", stack="normalize", axis=alt.Axis(format="%")),
        color=alt.Color("state:N", scale=TIME_COLOURS, legend=alt.Legend(title="state")),
        order=alt.Order("order:Q"),
        tooltip=[alt.Tooltip("t:Q", format=".0f"), "state:N", alt.Tooltip("share:Q", format=".1%"),
                 alt.Tooltip("seconds:Q", format=",.0f")])
    spans = []
    if faults is not None and not faults.empty:
        f = faults.assign(end=faults["end"].clip(upper=t_end))
        spans = [alt.Chart(f).mark_rect(opacity=0.0, stroke="#d62728", strokeWidth=2, strokeDash=[4, 3]).encode(
            x="start:Q", x2="end:Q", tooltip=["fault:N", "target:N", "start:Q", "end:Q"])]
    return alt.layer(area, *spans).properties(height=height, title=title)


def drops_over_time(df: pd.DataFrame, faults: pd.DataFrame | None, t_end: float, title: str) -> alt.Chart:
    """Drops per window stacked by reason (one run; several runs: a line per run and reason)."""
    runs = df["run"].nunique() if not df.empty else 0
    x = alt.X("t:Q", title="simulated time (s)", scale=alt.Scale(domain=[0, t_end], nice=False))
    colour = alt.Color("reason:N", scale=CATEGORIES, legend=alt.Legend(title="reason", orient="bottom"))
    tip = ["run:N", "reason:N", alt.Tooltip("t:Q", format=".0f"), "count:Q"]
    if runs <= 1:
        mark = alt.Chart(df).mark_bar(opacity=0.85).encode(x=x, y=alt.Y("count:Q", title="messages", stack="zero"),
                                                          color=colour, tooltip=tip)
    else:
        mark = alt.Chart(df).mark_line().encode(x=x, y=alt.Y("count:Q", title="messages"), color=colour,
                                                strokeDash=alt.StrokeDash("run:N", legend=alt.Legend(
                                                    title=None, orient="bottom", labelLimit=0, columns=1)),
                                                tooltip=tip)
    return alt.layer(*_fault_spans(faults, t_end), mark).properties(
        height=_tall(200, df, "reason", 1 + (df["run"].nunique() if runs > 1 else 0)), title=title)
