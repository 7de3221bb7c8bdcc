"""A drift report as one self-contained HTML page: no scripts, no external files, no network.

The page has a summary (counts, then a table with drifted features first) and a card per feature
with an inline SVG plot (numbers and times: both histograms overlaid and both distribution
functions with the KS gap marked; categories: side-by-side bars of the shares), the metrics with
their thresholds, and the main statistics side by side. Every text from the data (feature names,
category values) is escaped. Colours follow the reader's light or dark mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from featurestore.monitoring.drift import METRIC_LABELS, DriftReport, FeatureDrift, Metric, format_number
from featurestore.monitoring.stats import ColumnStats

#: Categories drawn individually; the rest are drawn as one "other" row.
MAX_CATEGORY_ROWS = 12
#: When there are more values than rows, values below this share on both sides join "(other)" too.
MIN_CATEGORY_SHARE = 0.005
_HTML_LABELS = {"ks": "Kolmogorov&#8211;Smirnov", "js": "Jensen&#8211;Shannon distance",
                "chi2_pvalue": "&#967;&#178; p-value", "null_fraction": "Missing change"}
_W = 640  # SVG user units, about CSS pixels at full width; the SVG scales to its container


def html_report(
    report: DriftReport,
    reference: Mapping[str, ColumnStats],
    current: Mapping[str, ColumnStats],
    title: str,
    *,
    reference_label: str = "reference",
    current_label: str = "current",
    subtitle: str | None = None,
    generated_at: datetime | None = None,
) -> str:
    """The HTML page for ``report`` (as returned by ``compare(reference, current)``).

    ``reference_label``/``current_label`` name the two sides in legends (for example the training
    set's name and the window's dates); ``generated_at`` defaults to now.

    >>> Path("drift.html").write_text(html_report(report, ref, cur, "fraud_v1: last 7 days"))
    """
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M %Z").strip()
    features = report.ordered()
    counts = {s: sum(f.status == s for f in features) for s in ("drift", "warn", "ok", "skipped")}
    sides = (
        f"<span class=\"sw ref\"></span>{_e(reference_label)} ({_rows(reference)})"
        f" &#8594; <span class=\"sw cur\"></span>{_e(current_label)} ({_rows(current)})"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        "<header class=\"top\">",
        f"<h1>{_e(title)}</h1>",
        f"<p class=\"sub\">{_e(subtitle)}</p>" if subtitle else "",
        f"<p class=\"sub\">{sides} &#183; generated {_e(when)}</p>",
        "</header>",
        '<section class="cards">',
        _card("Features", len(features), ""),
        _card("Drifted", counts["drift"], "drift"),
        _card("Warnings", counts["warn"], "warn"),
        _card("OK", counts["ok"], "ok"),
        _card("Skipped", counts["skipped"], "skipped"),
        "</section>",
        _summary_table(features),
        '<section class="features">',
        *(
            _feature_card(i, f, reference.get(f.name), current.get(f.name), reference_label, current_label)
            for i, f in enumerate(features)
        ),
        "</section>",
        _FOOTER,
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


# --- page parts -----------------------------------------------------------------------------------------


def _card(label: str, value: int, status: str) -> str:
    cls = f"card s-{status}" if status and value else "card"
    return f'<div class="{cls}"><div class="n">{value}</div><div class="l">{_e(label)}</div></div>'


def _summary_table(features: Sequence[FeatureDrift]) -> str:
    names = ["Feature", "Kind", "Status", "PSI", "KS", "JS", '<span class="nt">&#967;&#178;</span> p',
             "Missing &#916;", "Values", "Tripped"]
    head = "".join(f'<th class="num">{h}</th>' if 3 <= i <= 8 else f"<th>{h}</th>" for i, h in enumerate(names))
    rows = []
    for i, f in enumerate(features):
        cells = [
            f'<td class="name"><a href="#f{i}">{_e(f.name)}</a></td>',
            f"<td>{_e(f.kind)}</td>",
            f"<td>{_badge(f.status)}</td>",
            *(_metric_cell(f.metric(name)) for name in ("psi", "ks", "js", "chi2_pvalue", "null_fraction")),
            f'<td class="num muted">{f.reference_values:,} &#8594; {f.current_values:,}</td>',
            f"<td>{_e(_tripped(f) or f.note)}</td>",
        ]
        rows.append(f'<tr class="s-{f.status}">{"".join(cells)}</tr>')
    return (f'<section><h2>Summary</h2><div class="scroll"><table class="summary"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div></section>")


def _metric_cell(m: Metric | None) -> str:
    if m is None:
        return '<td class="num muted">&#8211;</td>'
    return f'<td class="num lv-{m.level}" title="{_e(_threshold_text(m))}">{_e(_metric_value(m))}</td>'


def _feature_card(index: int, f: FeatureDrift, ref: ColumnStats | None, cur: ColumnStats | None,
                  ref_label: str, cur_label: str) -> str:
    tripped = f"drifted on {_tripped(f)}" if f.tripped else f.note
    head = (f'<header><h3>{_e(f.name)}</h3><span class="chip">{_e(f.kind)}</span>{_badge(f.status)}'
            f'<span class="why">{_e(tripped)}</span></header>')
    plot = _plot(f, ref, cur, ref_label, cur_label)
    return (f'<article class="feature s-{f.status}" id="f{index}">{head}'
            f'<div class="body"><figure>{plot}</figure><div class="side">{_metrics_table(f)}</div></div>'
            f"{_stats_table(ref, cur)}</article>")


def _tripped(f: FeatureDrift) -> str:
    names = {**METRIC_LABELS, "kind": "kind change", "null_fraction": "missing change"}
    return ", ".join(names.get(t, t) for t in f.tripped)


def _metrics_table(f: FeatureDrift) -> str:
    if not f.metrics:
        return ""
    rows = "".join(
        f'<tr><td>{_HTML_LABELS.get(m.name) or _e(METRIC_LABELS.get(m.name, m.name))}</td>'
        f'<td class="num lv-{m.level}">{_e(_metric_value(m))}</td>'
        f'<td class="muted">{_e(_threshold_text(m))}</td><td>{_level(m)}</td></tr>'
        for m in f.metrics
    )
    return ('<table class="metrics"><thead><tr><th>Metric</th><th class="num">Value</th><th>Threshold</th><th></th>'
            f"</tr></thead><tbody>{rows}</tbody></table>")


def _stats_table(ref: ColumnStats | None, cur: ColumnStats | None) -> str:
    some = ref or cur
    if some is None:
        return ""
    dash = "&#8211;"
    lines: list[tuple[str, str, str]] = []

    def add(label: str, show: Callable[[ColumnStats], str]) -> None:
        lines.append((label, _side(ref, show), _side(cur, show)))

    add("rows", lambda s: f"{s.count:,}")
    add("missing", lambda s: f"{s.null_fraction:.1%}")
    add("distinct", lambda s: dash if s.distinct is None else f"{s.distinct:,}")
    if some.kind in ("numeric", "timestamp"):
        add("mean", lambda s: _value(s, s.mean))
        add("std", lambda s: _spread(s, s.std))
        add("min", lambda s: _value(s, s.min))
        for key, label in (("p05", "5%"), ("p50", "median"), ("p95", "95%")):
            add(label, _quantile(key))
        add("max", lambda s: _value(s, s.max))
    elif some.kind == "boolean":
        add("true", lambda s: dash if s.mean is None else f"{s.mean:.1%}")
    elif some.kind == "categorical":
        add("most frequent", _top_value)
    head = "".join(f'<th class="num">{label}</th>' for label, _, _ in lines)
    ref_row = "".join(f'<td class="num">{a}</td>' for _, a, _ in lines)
    cur_row = "".join(f'<td class="num">{b}</td>' for _, _, b in lines)
    return ('<div class="scroll-x"><table class="stats">'
            f"<thead><tr><th></th>{head}</tr></thead><tbody>"
            f'<tr><th><span class="sw ref"></span>reference</th>{ref_row}</tr>'
            f'<tr><th><span class="sw cur"></span>current</th>{cur_row}</tr></tbody></table></div>')


def _quantile(key: str) -> Callable[[ColumnStats], str]:
    return lambda s: _value(s, s.quantiles.get(key))


def _side(s: ColumnStats | None, show: Callable[[ColumnStats], str]) -> str:
    """``show(s)`` (already HTML), or a dash when the side lacks the feature."""
    return "&#8211;" if s is None else show(s)


def _top_value(s: ColumnStats) -> str:
    if not s.top or not s.values:
        return "&#8211;"
    value, n = s.top[0]
    return f'<span class="val" title="{_e(value)}">{_e(_cut(value, 24))}</span> {n / s.values:.0%}'


def _badge(status: str) -> str:
    text = {"drift": "drift", "warn": "warning", "ok": "ok", "skipped": "skipped"}.get(status, status)
    return f'<span class="badge s-{_e(status)}">{_e(text)}</span>'


def _level(m: Metric) -> str:
    text = {"drift": "drift", "warn": "warning", "ok": "ok", "info": m.note or "info"}[m.level]
    return f'<span class="lv lv-{m.level}">{_e(text)}</span>'


def _metric_value(m: Metric) -> str:
    if m.value is None:
        return "-"
    if m.name == "null_fraction":
        return f"{m.value * 100:+.1f} pts"
    return format_number(m.value)


def _threshold_text(m: Metric) -> str:
    if m.threshold is None:
        return "off"
    if m.name == "null_fraction":
        return f"> {m.threshold * 100:g} pts"
    if m.name == "chi2_pvalue":
        return f"< {m.threshold:g}"
    warn = f", warn > {m.warn:g}" if m.warn is not None else ""
    return f"> {m.threshold:g}{warn}"


def _rows(stats: Mapping[str, ColumnStats]) -> str:
    n = max((s.count for s in stats.values()), default=0)
    return f"{n:,} row" + ("" if n == 1 else "s")


# --- plots ------------------------------------------------------------------------------------------------


def _plot(f: FeatureDrift, ref: ColumnStats | None, cur: ColumnStats | None, ref_label: str, cur_label: str) -> str:
    if ref is None or cur is None:
        return _message_svg(f"{'current data' if cur is None else 'reference'} has no column {f.name!r}")
    if ref.kind in ("numeric", "timestamp") and (ref.histogram or cur.histogram) and ref.kind == cur.kind:
        return _numeric_svg(f, ref, cur, ref_label, cur_label)
    if ref.kind in ("categorical", "boolean") and ref.kind == cur.kind and (ref.values or cur.values):
        return _category_svg(f, ref, cur, ref_label, cur_label)
    if ref.kind != cur.kind:
        return _message_svg(f"kind changed: {ref.kind} in the reference, {cur.kind} now")
    return _message_svg("no values to plot")


def _message_svg(text: str) -> str:
    return (f'<svg viewBox="0 0 {_W} 64" {_SVG} aria-label="{_e(text)}">'
            f'<rect {_c("empty")} x="0.5" y="0.5" width="{_W - 1}" height="63" rx="8"/>'
            f'<text x="{_W / 2}" y="37" text-anchor="middle">{_e(text)}</text></svg>')


def _legend(x: float, y: float, ref_label: str, cur_label: str) -> str:
    a, b = _cut(ref_label, 28), _cut(cur_label, 28)
    second = x + 20 + 7.0 * len(a) + 18
    return (f'<rect {_c("ref-fill ref-line")} x="{x}" y="{y - 9}" width="14" height="10" rx="2"/>'
            f'<text {_c("legend")} x="{x + 20}" y="{y}">{_e(a)}</text>'
            f'<rect {_c("cur-fill cur-line")} x="{second:.1f}" y="{y - 9}" width="14" height="10" rx="2"/>'
            f'<text {_c("legend")} x="{second + 20:.1f}" y="{y}">{_e(b)}</text>')


def _numeric_svg(f: FeatureDrift, ref: ColumnStats, cur: ColumnStats, ref_label: str, cur_label: str) -> str:
    from featurestore.monitoring.drift import ks_location, sketch_cdf

    hists = [h for h in (ref.histogram, cur.histogram) if h is not None]
    lo = min(h.edges[0] for h in hists)
    hi = max(h.edges[-1] for h in hists)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    height = 250
    # left: the two histograms as densities; right: the two distribution functions
    ax0, ax1, top, bottom = 8.0, 392.0, 34.0, 212.0
    bx0, bx1 = 440.0, 628.0

    def sx(v: float, x0: float = ax0, x1: float = ax1) -> float:
        return x0 + (v - lo) / (hi - lo) * (x1 - x0)

    densities = {}
    for name, s in (("ref", ref), ("cur", cur)):
        h = s.histogram
        if h is None or not sum(h.counts):
            continue
        total = sum(h.counts)
        densities[name] = [(h.edges[i], h.edges[i + 1], c / total / max(h.edges[i + 1] - h.edges[i], 1e-300))
                           for i, c in enumerate(h.counts)]
    peak = max((d for bins in densities.values() for *_, d in bins), default=1.0) or 1.0

    def sy(d: float) -> float:
        return bottom - d / (peak * 1.05) * (bottom - top)

    out = [f'<svg viewBox="0 0 {_W} {height}" {_SVG} '
           f'aria-label="{_e(f"distribution of {f.name}: reference and current")}">']
    out.append(_legend(ax0, 16, ref_label, cur_label))
    out.append(f'<text {_c("cap")} x="{bx0}" y="16">cumulative share</text>')
    for frac in (0.25, 0.5, 0.75, 1.0):
        y = bottom - frac * (bottom - top) / 1.05
        out.append(f'<line {_c("grid")} x1="{ax0}" x2="{ax1}" y1="{y:.1f}" y2="{y:.1f}"/>')
    for name in ("ref", "cur"):
        if name not in densities:
            continue
        bins = densities[name]
        pts = [f"{sx(bins[0][0]):.1f},{bottom}"]
        for a, b, d in bins:
            pts.append(f"{sx(a):.1f},{sy(d):.1f}")
            pts.append(f"{sx(b):.1f},{sy(d):.1f}")
        pts.append(f"{sx(bins[-1][1]):.1f},{bottom}")
        path = "M" + " L".join(pts)
        out.append(f'<path {_c(f"{name}-fill")} d="{path} Z"/><path {_c(f"{name}-line")} d="{path}"/>')
    for name, s in (("ref", ref), ("cur", cur)):
        median = s.quantiles.get("p50")
        if median is not None:
            x = sx(median)
            out.append(f'<line {_c(f"{name}-line median")} x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{bottom}">'
                       f"<title>{_e(('reference' if name == 'ref' else 'current') + ' median ' + _value(s, median))}"
                       "</title></line>")
    out.append(f'<line {_c("axis")} x1="{ax0}" x2="{ax1}" y1="{bottom}" y2="{bottom}"/>')
    out.append(_x_ticks(ref.kind, lo, hi, sx, bottom))
    # distribution functions from the sketches
    out.append(f'<line {_c("axis")} x1="{bx0}" x2="{bx1}" y1="{bottom}" y2="{bottom}"/>')
    for frac in (0.0, 0.5, 1.0):
        y = bottom - frac * (bottom - top)
        out.append(f'<line {_c("grid")} x1="{bx0}" x2="{bx1}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text x="{bx0 - 5}" y="{y + 4:.1f}" text-anchor="end">{frac:.0%}</text>')
    for name, s in (("ref", ref), ("cur", cur)):
        if not s.sketch:
            continue
        pts = [f"{bx0:.1f},{bottom}"]
        pts += [f"{sx(q, bx0, bx1):.1f},{bottom - i / (len(s.sketch) - 1) * (bottom - top):.1f}"
                for i, q in enumerate(s.sketch)]
        pts.append(f"{bx1:.1f},{top}")
        out.append(f'<polyline {_c(f"{name}-line")} points="{" ".join(pts)}"/>')
    if ref.kind == "numeric" and ref.sketch and cur.sketch:  # times are not compared on KS
        d, x = ks_location(ref.sketch, cur.sketch)
        if d > 0:
            y_ref, y_cur = float(sketch_cdf(ref.sketch, [x])[0]), float(sketch_cdf(cur.sketch, [x])[0])
            px = sx(x, bx0, bx1)
            ya, yb = bottom - y_ref * (bottom - top), bottom - y_cur * (bottom - top)
            anchor = "start" if px < (bx0 + bx1) / 2 else "end"
            dx = 5 if anchor == "start" else -5
            out.append(f'<line {_c("ks")} x1="{px:.1f}" x2="{px:.1f}" y1="{ya:.1f}" y2="{yb:.1f}"/>'
                       f'<text {_c("ks-label")} x="{px + dx:.1f}" y="{(ya + yb) / 2 + 4:.1f}" text-anchor="{anchor}">'
                       f"KS {format_number(d)}</text>")
    out.append(_x_ticks(ref.kind, lo, hi, lambda v: sx(v, bx0, bx1), bottom, count=4))
    out.append("</svg>")
    return "".join(out)


def _x_ticks(kind: str, lo: float, hi: float, sx: Callable[[float], float], bottom: float, count: int = 5) -> str:
    ticks = _time_ticks(lo, hi, count) if kind == "timestamp" else _nice_ticks(lo, hi, count)
    span = hi - lo
    out = []
    for t in ticks:
        x = sx(t)
        label = _time_label(t, span) if kind == "timestamp" else _short(t)
        out.append(f'<line {_c("axis")} x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}"/>'
                   f'<text x="{x:.1f}" y="{bottom + 17}" text-anchor="middle">{_e(label)}</text>')
    return "".join(out)


def _nice_ticks(lo: float, hi: float, count: int) -> list[float]:
    span = hi - lo
    raw = span / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks: list[float] = []
    t = first
    while t <= hi + step * 1e-9 and len(ticks) < 20:
        ticks.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return ticks


_TIME_STEPS = (1, 5, 15, 60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400,
               14 * 86400, 30 * 86400, 91 * 86400, 182 * 86400, 365 * 86400)


def _time_ticks(lo: float, hi: float, count: int) -> list[float]:
    span = hi - lo
    step = next((s for s in _TIME_STEPS if span / s <= count), None)
    if step is None:
        return _nice_ticks(lo, hi, count)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) // step) + 1)]


def _time_label(t: float, span: float) -> str:
    when = datetime.fromtimestamp(t, UTC)
    if span > 3 * 86400:
        return when.strftime("%Y-%m-%d")
    if span > 3600:
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%H:%M:%S")


def _category_svg(f: FeatureDrift, ref: ColumnStats, cur: ColumnStats, ref_label: str, cur_label: str) -> str:
    def shares(s: ColumnStats) -> dict[str, float]:
        return {v: n / s.values for v, n in s.top} if s.values else {}

    rs, cs = shares(ref), shares(cur)
    order = sorted(dict.fromkeys([*rs, *cs]), key=lambda v: -max(rs.get(v, 0.0), cs.get(v, 0.0)))
    # rare values go to "(other)", unless there are few values in all
    big = [v for v in order if max(rs.get(v, 0.0), cs.get(v, 0.0)) >= MIN_CATEGORY_SHARE]
    shown = (order if len(order) <= MAX_CATEGORY_ROWS else big)[:MAX_CATEGORY_ROWS]
    hidden = len(order) - len(shown)

    def share(s: ColumnStats, table: dict[str, float], v: str) -> float | None:
        """The value's share, 0 when known absent, None when unknown (in the unlisted tail)."""
        if v in table:
            return table[v]
        return 0.0 if s.other == 0 or not s.values else None

    rows: list[tuple[str, str, float | None, float | None, str]] = [
        (v, _cut(v, 22), share(ref, rs, v), share(cur, cs, v), "") for v in shown
    ]
    rest_ref = 1.0 - sum(x for x in (r[2] for r in rows) if x is not None) if ref.values else 0.0
    rest_cur = 1.0 - sum(x for x in (r[3] for r in rows) if x is not None) if cur.values else 0.0
    if rest_ref > 5e-4 or rest_cur > 5e-4:
        more = f"{hidden} more values" if hidden else "values not listed"
        rows.append(("", "(other)", max(rest_ref, 0.0), max(rest_cur, 0.0), more))
    bound = {"ref": min(rs.values(), default=0.0), "cur": min(cs.values(), default=0.0)}
    peak = max([x for r in rows for x in (r[2], r[3]) if x is not None] + [1e-9])
    label_w, bar_x, bar_max = 150.0, 158.0, 400.0
    row_h, top = 28.0, 30.0
    height = int(top + row_h * len(rows) + 8)
    out = [f'<svg viewBox="0 0 {_W} {height}" {_SVG} '
           f'aria-label="{_e(f"value shares of {f.name}: reference and current")}">',
           _legend(bar_x, 16, ref_label, cur_label)]
    for i, (value, label, a, b, more) in enumerate(rows):
        y = top + i * row_h
        tip = more or value
        out.append(f'<text {_c("cat")} x="{label_w}" y="{y + 15:.1f}" text-anchor="end"><title>{_e(tip)}</title>'
                   f"{_e(label)}</text>")
        for j, (name, x) in enumerate((("ref", a), ("cur", b))):
            by = y + 2 + j * 11
            if x is None:
                text = f"< {bound[name]:.1%}"
                out.append(f'<text {_c("pct")} x="{bar_x + 2}" y="{by + 9:.1f}">{_e(text)} (not listed)</text>')
                continue
            w = bar_max * x / peak
            side = "reference" if name == "ref" else "current"
            out.append(f'<rect {_c(f"{name}-bar")} x="{bar_x}" y="{by:.1f}" width="{max(w, 0.5):.1f}" '
                       f'height="10" rx="2"><title>{_e(f"{side}: {x:.2%}")}</title></rect>'
                       f'<text {_c("pct")} x="{bar_x + w + 5:.1f}" y="{by + 9:.1f}">{x:.1%}</text>')
    out.append("</svg>")
    return "".join(out)


# --- formatting -------------------------------------------------------------------------------------------


# Presentation attributes: the look without the page's stylesheet (an SVG copied out, a viewer
# without CSS); in the page, the stylesheet's rules win and follow light or dark mode.
_PAINT = {
    "ref-fill": 'fill="#4c78a8" fill-opacity="0.28"',
    "cur-fill": 'fill="#f58518" fill-opacity="0.16"',
    "ref-line": 'fill="none" stroke="#4c78a8" stroke-width="1.6"',
    "cur-line": 'fill="none" stroke="#f58518" stroke-width="2.2"',
    "ref-fill ref-line": 'fill="#4c78a8" fill-opacity="0.35" stroke="#4c78a8"',
    "cur-fill cur-line": 'fill="#f58518" fill-opacity="0.3" stroke="#f58518"',
    "ref-line median": 'stroke="#4c78a8" stroke-width="1.4" stroke-dasharray="4 3"',
    "cur-line median": 'stroke="#f58518" stroke-width="1.4" stroke-dasharray="4 3"',
    "ref-bar": 'fill="#4c78a8"',
    "cur-bar": 'fill="#f58518"',
    "axis": 'stroke="#667085"',
    "grid": 'stroke="#e3e6eb"',
    "ks": 'stroke="#1d2433" stroke-width="2"',
    "ks-label": 'fill="#1d2433" font-weight="700"',
    "legend": 'fill="#1d2433" font-size="12"',
    "cat": 'fill="#1d2433" font-size="12"',
    "cap": 'letter-spacing="0.5"',
    "pct": "",
    "empty": 'fill="#f0f2f5" stroke="#e3e6eb"',
}
_SVG = ('xmlns="http://www.w3.org/2000/svg" role="img" font-family="system-ui, -apple-system, Segoe UI, Roboto, '
        'Helvetica, Arial, sans-serif" font-size="11" fill="#667085"')


def _c(classes: str) -> str:
    """``class="..."`` and the matching presentation attributes."""
    paint = _PAINT.get(classes, "")
    return f'class="{classes}" {paint}'.rstrip()


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _short(x: float) -> str:
    """A number for an axis or a table: 4 significant digits, thousands separated."""
    if x == 0:
        return "0"
    if abs(x) >= 1e7 or abs(x) < 1e-3:
        return f"{x:.3g}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def _value(s: ColumnStats, x: float | None) -> str:
    if x is None:
        return "&#8211;"
    if s.kind == "timestamp":
        return datetime.fromtimestamp(x, UTC).strftime("%Y-%m-%d %H:%M")
    return _short(x)


def _spread(s: ColumnStats, x: float | None) -> str:
    if x is None:
        return "&#8211;"
    if s.kind != "timestamp":
        return _short(x)
    for unit, seconds in (("d", 86400), ("h", 3600), ("min", 60)):
        if x >= seconds:
            return f"{x / seconds:.3g} {unit}"
    return f"{x:.3g} s"


_CSS = """
:root{--bg:#f6f7f9;--card:#fff;--text:#1d2433;--muted:#667085;--line:#e3e6eb;--ref:#4c78a8;--cur:#f58518;
--drift:#c4320a;--drift-bg:#fff1ec;--warn:#a15c07;--warn-bg:#fff8e6;--ok:#127a4a;--ok-bg:#ebf8f1;
--skipped:#5a6474;--skipped-bg:#f0f2f5;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--card:#1a1f26;--text:#e6e9ee;--muted:#98a2b3;
--line:#2c333d;--ref:#6fa0d6;--cur:#ff9d3f;--drift:#ff7a59;--drift-bg:#3a1d16;--warn:#f5b83d;--warn-bg:#332610;
--ok:#4cc38a;--ok-bg:#12291e;--skipped:#98a2b3;--skipped-bg:#232a33}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:32px clamp(12px,3vw,32px) 64px}
h1{font-size:1.7rem;margin:0 0 4px;letter-spacing:-.01em}
h2{font-size:1.15rem;margin:32px 0 10px}
h3{font-size:1.1rem;margin:0;word-break:break-word}
.sub{color:var(--muted);margin:2px 0}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 5px 0 2px;vertical-align:baseline}
.sw.ref{background:var(--ref)}.sw.cur{background:var(--cur)}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:24px}
.card{flex:1 1 130px;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 16px}
.card .n{font-size:1.8rem;font-weight:650;font-variant-numeric:tabular-nums}
.card .l{color:var(--muted);font-size:.85rem;text-transform:uppercase;letter-spacing:.04em}
.card.s-drift .n{color:var(--drift)}.card.s-warn .n{color:var(--warn)}.card.s-ok .n{color:var(--ok)}
.scroll{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:10px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;text-align:left;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.78rem;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);font-weight:600}
tbody tr:last-child td,tbody tr:last-child th{border-bottom:0}
.num{text-align:right;white-space:nowrap}.nt{text-transform:none}.muted{color:var(--muted)}
.summary .name a{color:inherit;font-weight:600;text-decoration:none;word-break:break-word}
.summary .name a:hover{text-decoration:underline}
.summary tr.s-drift{background:var(--drift-bg)}.summary tr.s-warn{background:var(--warn-bg)}
.summary tr.s-skipped{color:var(--muted)}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:.72rem;font-weight:700;
text-transform:uppercase;letter-spacing:.05em;white-space:nowrap}
.badge.s-drift{background:var(--drift);color:#fff}.badge.s-warn{background:var(--warn);color:#fff}
.badge.s-ok{background:var(--ok-bg);color:var(--ok)}.badge.s-skipped{background:var(--skipped-bg);color:var(--skipped)}
.lv-drift{color:var(--drift);font-weight:700}.lv-warn{color:var(--warn);font-weight:700}
.lv-ok{color:var(--ok)}.lv-info{color:var(--muted)}.lv{font-size:.85rem}
.feature{background:var(--card);border:1px solid var(--line);border-left:5px solid var(--skipped);
border-radius:10px;padding:16px 20px;margin:16px 0}
.feature.s-drift{border-left-color:var(--drift)}.feature.s-warn{border-left-color:var(--warn)}
.feature.s-ok{border-left-color:var(--ok)}
.feature>header{display:flex;flex-wrap:wrap;align-items:center;gap:10px;margin-bottom:12px}
.chip{font-size:.78rem;color:var(--muted);border:1px solid var(--line);border-radius:6px;padding:0 7px}
.why{color:var(--muted);font-size:.9rem}
.body{display:flex;flex-wrap:wrap;gap:16px 24px;align-items:flex-start}
figure{margin:0;flex:3 1 420px;min-width:0}.side{flex:2 1 280px;min-width:0}
.side table{font-size:.88rem}
.scroll-x{overflow-x:auto;margin-top:14px}
.stats{font-size:.85rem}.stats tbody th{text-transform:none;letter-spacing:0;font-size:.85rem;white-space:nowrap}
.val{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}
svg{display:block;width:100%;height:auto;overflow:visible}
svg text{font-size:11px;fill:var(--muted);font-family:inherit}
svg text.legend,svg text.cat{fill:var(--text);font-size:12px}
svg text.cap{font-size:11px;text-transform:uppercase;letter-spacing:.05em}
svg text.ks-label{fill:var(--text);font-weight:700}
.ref-fill{fill:var(--ref);fill-opacity:.28}.cur-fill{fill:var(--cur);fill-opacity:.16}
.ref-line{fill:none;stroke:var(--ref);stroke-width:1.6}.cur-line{fill:none;stroke:var(--cur);stroke-width:2.2}
rect.ref-fill.ref-line{fill:var(--ref);fill-opacity:.35}rect.cur-fill.cur-line{fill:var(--cur);fill-opacity:.3}
.ref-bar{fill:var(--ref)}.cur-bar{fill:var(--cur)}
.median{stroke-dasharray:4 3;stroke-width:1.4}
.axis{stroke:var(--muted);stroke-width:1}.grid{stroke:var(--line);stroke-width:1}
.ks{stroke:var(--text);stroke-width:2}
.empty{fill:var(--skipped-bg);stroke:var(--line)}
footer{margin-top:40px;color:var(--muted);font-size:.88rem;border-top:1px solid var(--line);padding-top:16px}
footer dt{font-weight:650;color:var(--text)}footer dd{margin:0 0 8px}
"""

_FOOTER = """<footer><h2>How to read this</h2><dl>
<dt>PSI (population stability index)</dt><dd>How much the current values moved between the reference's ten
decile bins. Below 0.1 is stable, 0.1 to 0.2 a moderate shift (warning), above 0.2 a significant one.</dd>
<dt>KS (Kolmogorov&#8211;Smirnov)</dt><dd>The largest gap between the two cumulative distributions (the
black bar in the right-hand plot): the share of values that moved past some point. Drift above 0.1.</dd>
<dt>JS distance (Jensen&#8211;Shannon)</dt><dd>How different the category mixes are, from 0 (the same) to 1
(no value in common). Drift above 0.1.</dd>
<dt>&#967;&#178; p-value</dt><dd>The chi-square test that both mixes come from the same distribution. Shown,
not used by default: with many rows even tiny, harmless changes give small p-values.</dd>
<dt>Missing change</dt><dd>Change of the share of null (or NaN) values, in percentage points. Drift above 5.</dd>
<dt>Values</dt><dd>Each check decides only when both sides have at least 100 values; thresholds can be set per
feature.</dd></dl></footer>"""
