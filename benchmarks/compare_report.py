"""The outputs of ``run.py``: the figures, the terminal table, the Markdown report and its SVG chart.

The chart is plain SVG written here (no plotting library): per figure, a bar for this project and
one for Feast on a scale of their own (the longer bar is the larger value), the values at the bar
ends and the ratio ours / Feast on the right, green where ours is better and red where it is worse.
"""

from __future__ import annotations

from html import escape
from typing import Any

from compare_checks import format_checks

# (key, section, label, unit, better, path into results per side)
FIGURES = (
    ("import", "client", "import time (fresh interpreter)", "s", "lower", ("import", "seconds")),
    ("cold_start", "client", "cold start to the first 1 x 19 lookup", "s", "lower", ("cold_start", "seconds")),
    ("apply", "definitions", "apply (empty registry)", "s", "lower", ("apply", "seconds")),
    ("training_s", "training set", "get_historical_features, wall", "s", "lower", ("training_set", "seconds")),
    ("training_mb", "training set", "get_historical_features, peak memory", "MB", "lower",
     ("training_set", "peak_rss_mb")),
    ("materialize_rate", "materialize", "materialize, throughput", "rows/s", "higher", ("materialize", "rows_per_s")),
    ("materialize_mb", "materialize", "materialize, peak memory", "MB", "lower", ("materialize", "peak_rss_mb")),
    ("inproc1_p50", "online", "in process 1 x 19, p50", "ms", "lower", ("online", "online1", "p50_ms")),
    ("inproc1_p99", "online", "in process 1 x 19, p99", "ms", "lower", ("online", "online1", "p99_ms")),
    ("inproc100_p50", "online", "in process 100 x 19, p50", "ms", "lower", ("online", "online100", "p50_ms")),
    ("inproc100_p99", "online", "in process 100 x 19, p99", "ms", "lower", ("online", "online100", "p99_ms")),
    ("server1_p50", "server", "server 1 x 19, p50", "ms", "lower", ("server", "online1", "p50_ms")),
    ("server1_p99", "server", "server 1 x 19, p99", "ms", "lower", ("server", "online1", "p99_ms")),
    ("server100_p50", "server", "server 100 x 19, p50", "ms", "lower", ("server", "online100", "p50_ms")),
    ("server100_p99", "server", "server 100 x 19, p99", "ms", "lower", ("server", "online100", "p99_ms")),
)
OURS_COLOR, FEAST_COLOR = "#2b6cb0", "#dd6b20"
BETTER_COLOR, WORSE_COLOR = "#2f855a", "#c53030"


def _get(results: dict[str, Any], path: tuple[str, ...], side: str) -> dict[str, float] | None:
    node: Any = results.get(path[0], {}).get(side)
    for part in path[1:]:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node if isinstance(node, dict) and "median" in node else None


def figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    results = report["results"]
    for key, section, label, unit, better, path in FIGURES:
        ours, feast = _get(results, path, "ours"), _get(results, path, "feast")
        if ours is None:
            continue
        ratio = ours["median"] / feast["median"] if feast and feast["median"] else None
        out.append({"key": key, "section": section, "label": label, "unit": unit, "better": better,
                    "ours": {k: ours[k] for k in ("median", "min", "max")},
                    "feast": None if feast is None else {k: feast[k] for k in ("median", "min", "max")},
                    "ratio": ratio})
    return out


def fmt(value: float, unit: str) -> str:
    if unit == "rows/s":
        return f"{value:,.0f}"
    if unit == "MB":
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def spread(s: dict[str, float] | None, unit: str) -> str:
    if s is None:
        return "-"
    if s["min"] == s["max"]:
        return fmt(s["median"], unit)
    return f"{fmt(s['median'], unit)} [{fmt(s['min'], unit)}-{fmt(s['max'], unit)}]"


def verdict(fig: dict[str, Any]) -> str:
    r = fig["ratio"]
    if r is None:
        return "-"
    word = {"s": ("faster", "slower"), "ms": ("faster", "slower"), "MB": ("less", "more"),
            "rows/s": ("faster", "slower")}[fig["unit"]]
    if fig["better"] == "lower":
        good, factor = r <= 1, (1 / r if r else float("inf"))
        factor = factor if good else r
    else:
        good, factor = r >= 1, (r if r >= 1 else 1 / r)
    return f"{r:.3g} ({factor:.1f}x {word[0] if good else word[1]})"


def _better(fig: dict[str, Any]) -> bool | None:
    r = fig["ratio"]
    if r is None:
        return None
    return r <= 1 if fig["better"] == "lower" else r >= 1


def _title(report: dict[str, Any], short: bool = False) -> str:
    s = report["scale"]
    feast = report.get("feast")
    vs = f" vs Feast {feast['feast']}" if feast else ""
    head = f"featurestore{vs}, scale {s['name']}"
    runs = f"median of {report['repeat']} run{'s' if report['repeat'] > 1 else ''}"
    tail = (f"{s['users']:,} users x {s['rows_per_user']} rows, {s['entity_rows']:,} entity rows, "
            f"{report['features']} features, {runs}")
    return head if short else f"{head}: {tail}"


def _subtitle(report: dict[str, Any]) -> str:
    return _title(report).split(": ", 1)[1]


def _machine(report: dict[str, Any]) -> str:
    m = report["machine"]
    return (f"{m['cpu_count']} CPUs ({m['cpu_model']}), {m['mem_total_gb']} GB, {m['platform']}, Python {m['python']}")


def _versions(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    srv = report["server"]
    lines = [f"featurestore {m.get('featurestore') or ''} at commit {m['git_commit']} (featurestore/ sha256 "
             f"{m['featurestore_source_sha256']}): duckdb {m['duckdb']}, polars {m['polars']}, pyarrow {m['pyarrow']}, "
             f"redis-py {m.get('redis_py')}, grpcio {m.get('grpcio')}",
             f"online store: {srv['name']} {srv['version']} (embedded, one server for the whole run, background saves "
             f"off); ours in database {srv['ours']['db']} under '{srv['ours']['key_prefix']}'"
             + (f", Feast in database {srv['feast']['db']} (project {srv['feast']['project']})" if srv.get("feast")
                else "")]
    feast = report.get("feast")
    if feast:
        pk = feast.get("packages", {})
        extra = ", ".join(f"{n} {pk[n]}" for n in ("duckdb", "ibis-framework", "pandas", "pyarrow", "redis", "fastapi",
                                                    "gunicorn") if n in pk)
        lines.append(f"Feast {feast['feast']} ({feast['requirement']}, Python {feast.get('python')}, own venv): "
                     f"{extra}")
    return lines


def _load_lines(report: dict[str, Any]) -> list[str]:
    res = report["results"]
    worst: list[tuple[float, str]] = []
    for section in ("apply", "training_set", "materialize", "online", "server"):
        for side, r in res.get(section, {}).items():
            if isinstance(r, dict) and r.get("max_other_load") is not None:
                worst.append((r["max_other_load"], f"{section} ({side})"))
    load = report["load"]
    idle = load.get("idle_other_cpus_before")
    line = (f"machine load: {idle if idle is not None else float('nan'):.2f} CPUs busy elsewhere before measuring; "
            f"load average {' '.join(f'{x:.2f}' for x in load['load_average_start'])} at start, "
            f"{' '.join(f'{x:.2f}' for x in load.get('load_average_end', []))} at end")
    if worst:
        value, where = max(worst)
        note = "quiet" if value < 0.1 else "BUSY: other processes competed for the CPUs, times are inflated"
        line += f"; other processes used up to {value:.2f} CPUs during a measured child ({where}): {note}"
    return [line]


def format_table(report: dict[str, Any]) -> str:
    figs = report["figures"]
    feast = report.get("feast")
    lines = [_title(report), f"machine: {_machine(report)}", *_versions(report), ""]
    name = f"Feast {feast['feast']}" if feast else "Feast"
    header = f"{'figure':<42}{'ours: median [min-max]':>30}{name + ': median [min-max]':>32}{'ours / Feast':>26}"
    lines += [header, "-" * len(header)]
    section = None
    for f in figs:
        if f["section"] != section and section is not None:
            lines.append("")
        section = f["section"]
        label = f"{f['label']} ({f['unit']})"
        lines.append(f"{label:<42}{spread(f['ours'], f['unit']):>30}{spread(f['feast'], f['unit']):>32}"
                     f"{verdict(f):>26}")
    lines.append("")
    lines += _notes(report)
    checks = report.get("checks")
    if checks:
        lines += ["", "correctness (same run):", *format_checks(checks)]
    lines += ["", *_load_lines(report)]
    left = report.get("left_running")
    lines.append(f"processes left running: {left or 'none'}")
    return "\n".join(lines)


def _notes(report: dict[str, Any]) -> list[str]:
    res = report["results"]
    out = []
    ts = res.get("training_set", {})
    if "ours" in ts:
        o = ts["ours"]
        line = (f"training set: {o['rows']:,} rows x {o['columns']} columns; get_historical_features alone (without "
                f"reading the entity file): ours {o['get_historical_features_s']['median']:.3f} s")
        if "feast" in ts:
            line += f", Feast {ts['feast']['get_historical_features_s']['median']:.3f} s (incl. .to_df())"
        out.append(line)
    mat = res.get("materialize", {})
    if "ours" in mat:
        line = (f"materialize: {mat['ours']['rows']:,} entity-view rows per run (the newest row of each user in "
                f"each view), keys written: ours {mat['ours']['keys']:,} (one per entity and view)")
        if "feast" in mat:
            line += f", Feast {mat['feast']['keys']:,} (one hash per entity)"
        out.append(line)
    srv = res.get("server", {})
    if "ours" in srv:
        line = (f"servers: ours {srv['ours']['command'].split(' --repo')[0]} (gRPC, the generated stub; "
                f"health check p50 {srv['ours']['health']['p50_ms']['median']:.3f} ms; featurestore.Client 1 x 19 p50 "
                f"{srv['ours']['client1']['p50_ms']['median']:.3f} ms)")
        if "feast" in srv:
            line += (f"; Feast {srv['feast']['command']} (HTTP + JSON; /health p50 "
                     f"{srv['feast']['health']['p50_ms']['median']:.3f} ms)")
        out.append(line)
    return out


def svg_chart(report: dict[str, Any]) -> str:
    figs = report["figures"]
    feast = report.get("feast")
    label_w, bar_w, ratio_w = 290, 380, 200
    width = label_w + bar_w + ratio_w + 30
    bar_h, gap = 13, 12
    row_h = 2 * bar_h + 2 + gap
    top = 94
    height = top + row_h * len(figs) + 90
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="12" y="22" font-size="16" font-weight="bold">{escape(_title(report, short=True))}</text>',
           f'<text x="12" y="40">{escape(_subtitle(report))}</text>',
           f'<text x="12" y="56" fill="#555" font-size="11">{escape(_machine(report))}; '
           f'{escape(report["created_at"])}</text>']
    lx = label_w
    out.append(f'<rect x="{lx}" y="66" width="12" height="12" fill="{OURS_COLOR}"/>'
               f'<text x="{lx + 17}" y="76">featurestore (ours)</text>')
    if feast:
        out.append(f'<rect x="{lx + 150}" y="66" width="12" height="12" fill="{FEAST_COLOR}"/>'
                   f'<text x="{lx + 167}" y="76">Feast {escape(feast["feast"])}</text>')
    out.append(f'<text x="{label_w + bar_w + 20}" y="76" font-weight="bold">ours / Feast</text>')
    for i, f in enumerate(figs):
        y = top + i * row_h
        if i % 2 == 0:
            out.append(f'<rect x="4" y="{y - 4}" width="{width - 8}" height="{row_h}" fill="#f4f6f8"/>')
        out.append(f'<text x="12" y="{y + bar_h + 4}">{escape(f["label"])} ({escape(f["unit"])})</text>')
        values = [("ours", f["ours"]["median"], OURS_COLOR)]
        if f["feast"]:
            values.append(("feast", f["feast"]["median"], FEAST_COLOR))
        top_value = max(v for _, v, _ in values) or 1.0
        for j, (_side, v, color) in enumerate(values):
            w = max(1.0, (bar_w - 70) * v / top_value)
            by = y + j * (bar_h + 2)
            out.append(f'<rect x="{label_w}" y="{by}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
            out.append(f'<text x="{label_w + w + 4:.1f}" y="{by + bar_h - 2}" font-size="11">'
                       f'{escape(fmt(v, f["unit"]))}</text>')
        better = _better(f)
        if better is not None:
            color = BETTER_COLOR if better else WORSE_COLOR
            out.append(f'<text x="{label_w + bar_w + 20}" y="{y + bar_h + 4}" fill="{color}" font-weight="bold">'
                       f'{escape(verdict(f))}</text>')
    note_y = top + row_h * len(figs) + 18
    out.append(f'<text x="12" y="{note_y}" fill="#555" font-size="11">Bars: medians of {report["repeat"]} runs, each '
               'figure on its own scale. Lower is better except rows/s. Ratio = ours / Feast.</text>')
    for k, part in enumerate(_load_lines(report)[0].split("; ")):
        out.append(f'<text x="12" y="{note_y + 15 * (k + 1)}" fill="#555" font-size="11">{escape(part)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def markdown(report: dict[str, Any], svg_name: str, json_name: str) -> str:
    feast = report.get("feast")
    s = report["scale"]
    lines = [
        f"# featurestore{' vs Feast ' + feast['feast'] if feast else ''}: scale {s['name']}",
        "",
        f"{s['users']:,} users x {s['rows_per_user']} rows per view (profile: {max(1, s['rows_per_user'] // 4)}), "
        f"{s['entity_rows']:,} entity rows, {report['features']} features in 3 views; medians of {report['repeat']} "
        f"run{'s' if report['repeat'] > 1 else ''}, each in a fresh process, [min-max] in brackets.",
        "",
        f"Produced on {report['created_at']} by `{report['command']}` (from the repo root, with the project's "
        f"virtualenv; {report['elapsed_s'] / 60:.1f} min). Figures: [{json_name}]({json_name}).",
        "",
        f"* machine: {_machine(report)}",
        *(f"* {v}" for v in _versions(report)),
        *(f"* {line}" for line in _load_lines(report)),
        "",
        f"![ours and Feast side by side]({svg_name})",
        "",
        f"| figure | ours | {'Feast ' + feast['feast'] if feast else 'Feast'} | ours / Feast |",
        "|---|---:|---:|---:|",
    ]
    for f in report["figures"]:
        lines.append(f"| {f['label']} ({f['unit']}) | {spread(f['ours'], f['unit'])} | "
                     f"{spread(f['feast'], f['unit'])} | {verdict(f)} |")
    lines += ["", *(f"* {n}" for n in _notes(report))]
    checks = report.get("checks")
    lines += ["", "## Correctness (same run)", ""]
    if checks:
        lines += ["```", *format_checks(checks), "```"]
    else:
        lines.append("Not checked: run with `--compare feast`.")
    lines += [
        "",
        "## What is measured",
        "",
        "* **import**: `import featurestore` / `import feast` in a fresh interpreter, bytecode already cached "
        "(one untimed import first).",
        "* **cold start**: a fresh interpreter's time to its first online feature vector: the import, the store "
        "from the repo (registry read) and one 1 x 19 lookup, lazy imports included.",
        "* **apply**: ours `FeatureStore(repo).apply()`; Feast `feast apply`'s code (`repo_operations.apply_total`), "
        "both on an empty registry, parsing the repo's Python definitions.",
        "* **training set**: reading the entity-rows Parquet file + `get_historical_features` of all 19 features "
        "from the raw sources (Feast: DuckDB offline store, `pd.read_parquet` + `.to_df()`); peak memory is the "
        "child's `VmHWM` (imports included: "
        + ", ".join(f"{side} {r['baseline_peak_rss_mb']:.0f} MB after imports alone"
                    for side, r in report["results"].get("training_set", {}).items()) + ").",
        "* **materialize**: the whole data window into Redis from an empty database, newest-wins on both sides; "
        "rows/s = entity-view rows written / wall time.",
        "* **online, in process**: `get_online_features` of all 19 features for 1 and for 100 random known users "
        "per call (Feast: `.to_dict()`), 200 / 20 warm-up calls then 2,000 / 300 timed, the same users on both sides.",
        "* **online, server**: sequential calls on one connection over loopback: ours `featurestore serve` through "
        "the generated gRPC stub, Feast `feast serve` (HTTP, one gunicorn worker, access log off, no worker "
        "recycling) with `POST /get-online-features` and the JSON parsed.",
        "* Operations alternate between the two systems so that load changes hit both; nothing is asserted about "
        "timings.",
    ]
    return "\n".join(lines) + "\n"
