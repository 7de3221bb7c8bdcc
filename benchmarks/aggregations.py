"""Benchmark of windowed aggregations in training sets (``get_historical_features`` on a view with
``aggregations``), against hand-written DuckDB queries doing the same on the same files.

What it does, for one scale:

1. Generates deterministic data under ``--workdir``: one Parquet file of raw events
   (``user_id``, ``event_timestamp``, ``amount``; 90 days, whole seconds, about 1% exact duplicate
   events and 1% null amounts) and one of entity rows (``user_id``, ``event_timestamp``; about 2%
   unknown users, times from a day before the data to a day after it, and 2% of the rows placed
   exactly on a window edge of one of their user's events: ``t = event time + 0, 1, 7 or 30
   days``). The data is cached per scale, seed and generator (``--regenerate`` forces it).
2. Writes a repo next to it: one entity and one feature view over the events file with four
   aggregations (``amount`` sum 7d, count 1d, mean 30d, max 7d), resets its registry and offline
   store and applies it, so the retrieval reads the raw events.
3. Measures, each run in a fresh child process so that its peak memory is its own, in rounds
   (every operation once per round; ``--warmup`` unmeasured rounds first, then ``--repeat``):

   * ``baseline``: a child that only imports featurestore, polars, duckdb and pyarrow;
   * ``floor_polars`` / ``floor_duckdb``: reading both files into memory with ``pl.read_parquet``
     / DuckDB (``SELECT *`` to Arrow), the least any of the others must do;
   * ``ours``: ``pl.read_parquet(entity rows)`` + ``get_historical_features`` of the four features
     (a range join of the entity rows with the events in the longest window, one group per
     entity row, a ``FILTER`` per shorter window; see ``featurestore/offline/aggregate.py``);
   * ``duck_range``: the same plan written by hand as one DuckDB query over the two files;
   * ``duck_window``: a window-function formulation: the events and the entity rows in one
     ``UNION ALL``, each aggregate ``OVER (PARTITION BY user_id ORDER BY epoch_us(event_timestamp)
     RANGE BETWEEN <window in us - 1> PRECEDING AND CURRENT ROW)``, keeping the entity rows.
     Timestamps are whole microseconds, so ``window - 1 us`` preceding is the exclusive lower
     bound of ``(t - window, t]``; ``CURRENT ROW`` in ``RANGE`` mode takes every event at ``t``.

4. Checks the answers (not timed): the three results must be equal on every entity row (counts,
   max and nulls exactly, sum and mean to 1e-9 relative), and equal to a brute-force Polars
   computation on a sample of entity rows that includes window-edge rows. It checks after the
   first round and after the last, and exits with status 1 on any mismatch (after printing the
   table and writing the JSON).

Figures: median, min and max wall time of the operation (not the child's start-up or imports),
CPU time, peak RSS (``VmHWM``, as ``training_set.py``), entity rows per second, the ratio to the
Polars read floor, and ours over each operation. Nothing here asserts a timing.

Run it from the repo root with the project's virtualenv::

    .venv/bin/python benchmarks/aggregations.py --scale XS            # smoke run, seconds
    .venv/bin/python benchmarks/aggregations.py --scale S             # 1M events, 100k entity rows
    .venv/bin/python benchmarks/aggregations.py --scale M --repeat 3  # 10M events, 1M entity rows

Options: ``--warmup N`` (default 1), ``--workdir DIR`` (default
``benchmarks/results/work-aggregations``), ``--json PATH`` (default
``benchmarks/results/aggregations_<scale>.json``), ``--regenerate``, ``--seed N``, ``--sample N``
(entity rows checked against the brute-force computation, default 3000), ``--quiet``.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from training_set import (
    RESULTS,
    _children_cpu_seconds,
    _import_stack,
    _peak_rss_mb,
    _ru_maxrss_mb,
    _Stopwatch,
    _system_busy_seconds,
    machine_info,
    other_load,
    reset_store,
    warm_page_cache,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 90
_US = 1_000_000
VIEW = "spend"
# (function, window in days), in the order of the features; names follow Aggregation's: amount_sum_7d.
AGGREGATIONS = (("sum", 7), ("count", 1), ("mean", 30), ("max", 7))
FEATURES = tuple(f"amount_{fn}_{days}d" for fn, days in AGGREGATIONS)
_SQL_FUNCTIONS = {"sum": "sum", "count": "count", "mean": "avg", "max": "max"}
FLOAT_TOLERANCE = 1e-9  # relative, for sum and mean (the engines add in different orders)


@dataclass(frozen=True)
class Scale:
    name: str
    users: int
    events: int
    entity_rows: int


SCALES = {
    s.name: s
    for s in (
        Scale("XS", 10_000, 100_000, 10_000),
        Scale("S", 100_000, 1_000_000, 100_000),
        Scale("M", 1_000_000, 10_000_000, 1_000_000),
    )
}

# The operations, in the order they run within a round and are printed.
OPERATIONS = {
    "baseline": "baseline (imports only)",
    "floor_polars": "floor: polars read",
    "floor_duckdb": "floor: duckdb read",
    "ours": "featurestore (range join)",
    "duck_range": "DuckDB range join+GROUP BY",
    "duck_window": "DuckDB window functions",
}
RESULT_OPS = ("ours", "duck_range", "duck_window")
BASELINE_OPS = ("duck_range", "duck_window")

FEATURES_PY = '''\
"""Generated by benchmarks/aggregations.py: windowed aggregates of raw spend events."""

from datetime import timedelta

from featurestore import Entity, FeatureView, Field, FileSource, Float64
from featurestore.definitions.transformation import Aggregation

user = Entity("user", join_keys=["user_id"])
events = FileSource("data/events.parquet", timestamp_field="event_timestamp")
spend = FeatureView(
    "{view}",
    entities=[user],
    source=events,
    schema=[Field("amount", Float64)],
    aggregations=[
{aggregations}
    ],
)
'''


def features_py() -> str:
    lines = [f'        Aggregation("amount", "{fn}", timedelta(days={days})),' for fn, days in AGGREGATIONS]
    return FEATURES_PY.format(view=VIEW, aggregations="\n".join(lines))


# -- the data --------------------------------------------------------------------------------------


def generate(data: Path, scale: Scale, seed: int) -> None:
    """Write ``events.parquet`` and ``entity_rows.parquet`` under ``data`` (deterministic per seed)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n, users = scale.events, scale.users
    base = int(START.timestamp())
    user = rng.integers(0, users, n, dtype=np.int64)
    secs = rng.integers(0, DAYS * 86_400, n, dtype=np.int64)
    # About 1% of the events repeat another event's user and time exactly.
    dup = np.flatnonzero(rng.random(n) < 0.01)
    src = rng.integers(0, n, len(dup))
    user[dup], secs[dup] = user[src], secs[src]
    order = np.argsort(secs, kind="stable")  # an event log is written in time order
    user, secs = user[order], secs[order]
    amount = np.round(rng.lognormal(3.0, 1.0, n), 2)
    events = pa.table({
        "user_id": pa.array(user, pa.int64()),
        "event_timestamp": pa.array((base + secs) * _US, pa.timestamp("us")),
        "amount": pa.array(amount, pa.float64(), mask=rng.random(n) < 0.01),
    })

    m = scale.entity_rows
    e_user = rng.integers(0, int(users * 1.02), m, dtype=np.int64)  # ~2% users without events
    e_secs = rng.integers(-86_400, (DAYS + 1) * 86_400, m, dtype=np.int64)  # a day before to a day after
    # ~2% of the rows sit exactly on a window edge of one of their user's events.
    edge = np.flatnonzero(rng.random(m) < 0.02)
    pick = rng.integers(0, n, len(edge))
    offsets = np.array([0, 1, 7, 30], dtype=np.int64)[rng.integers(0, 4, len(edge))] * 86_400
    e_user[edge], e_secs[edge] = user[pick], secs[pick] + offsets
    entity = pa.table({
        "user_id": pa.array(e_user, pa.int64()),
        "event_timestamp": pa.array((base + e_secs) * _US, pa.timestamp("us")),
    })
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(events, data / "events.parquet", row_group_size=1 << 20)
    pq.write_table(entity, data / "entity_rows.parquet", row_group_size=1 << 20)
    (data / "edge_rows.json").write_text(json.dumps(sorted(int(i) for i in edge)))


def _generator_fingerprint() -> str:
    return hashlib.sha256(inspect.getsource(generate).encode()).hexdigest()[:16]


def prepare_repo(scale: Scale, workdir: Path, seed: int, regenerate: bool) -> tuple[Path, bool]:
    """The repo under ``workdir/<scale>/repo`` with its data; True if the data was generated."""
    repo = workdir / scale.name / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "featurestore.yaml").write_text("project: aggregations_benchmark\n")
    (repo / "features.py").write_text(features_py())
    data = repo / "data"
    marker = data / "generated.json"
    wanted = {"users": scale.users, "events": scale.events, "entity_rows": scale.entity_rows, "seed": seed,
              "generator": _generator_fingerprint()}
    files = [data / "events.parquet", data / "entity_rows.parquet", data / "edge_rows.json"]
    if (not regenerate and marker.is_file() and json.loads(marker.read_text()) == wanted
            and all(p.is_file() for p in files)):
        return repo, False
    import shutil

    shutil.rmtree(data, ignore_errors=True)
    generate(data, scale, seed)
    marker.write_text(json.dumps(wanted, indent=2))
    return repo, True


def data_info(repo: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    out = {}
    for name in ("events", "entity_rows"):
        path = repo / "data" / f"{name}.parquet"
        meta = pq.ParquetFile(path).metadata
        out[name] = {"rows": meta.num_rows, "row_groups": meta.num_row_groups, "bytes": path.stat().st_size}
    return out


# -- the hand-written queries ----------------------------------------------------------------------


def _interval_us(days: int) -> str:
    return f"INTERVAL '{days * 86_400 * _US} microseconds'"


def range_join_sql(events: Path, entity: Path) -> str:
    """Our plan by hand: entity rows LEFT JOIN events in ``(t - 30d, t]``, one group per row,
    a FILTER per shorter window."""
    longest = max(days for _, days in AGGREGATIONS)
    selects = []
    for (fn, days), name in zip(AGGREGATIONS, FEATURES, strict=True):
        call = f"{_SQL_FUNCTIONS[fn]}(v.amount)"
        if days < longest:
            call += f" FILTER (WHERE v.event_timestamp > e.event_timestamp - {_interval_us(days)})"
        selects.append(f"{call} AS {name}")
    return f"""
SELECT e.user_id, e.event_timestamp, {', '.join(selects)}
FROM read_parquet('{entity}', file_row_number = true) AS e
LEFT JOIN read_parquet('{events}') AS v
  ON v.user_id = e.user_id
 AND v.event_timestamp <= e.event_timestamp
 AND v.event_timestamp > e.event_timestamp - {_interval_us(longest)}
GROUP BY e.file_row_number, e.user_id, e.event_timestamp
ORDER BY e.file_row_number
"""


def window_sql(events: Path, entity: Path) -> str:
    """Events and entity rows in one UNION ALL, aggregates over per-user time frames; entity rows
    carry a null amount (ignored by every aggregate) and their row number.

    The frames are ordered by the time in microseconds (``epoch_us``), so ``window - 1 PRECEDING``
    is exactly the exclusive lower bound of ``(t - window, t]``; ``CURRENT ROW`` in ``RANGE`` mode
    takes every row at ``t``. (Ordering by the TIMESTAMP with ``INTERVAL '<window - 1 us>'``
    frames gives the same answer and took about 15% more CPU time at scale M.)"""
    windows = sorted({days for _, days in AGGREGATIONS})
    selects = [f"{_SQL_FUNCTIONS[fn]}(amount) OVER w{days} AS {name}"
               for (fn, days), name in zip(AGGREGATIONS, FEATURES, strict=True)]
    clauses = [
        f"w{days} AS (PARTITION BY user_id ORDER BY t RANGE BETWEEN {days * 86_400 * _US - 1} PRECEDING "
        "AND CURRENT ROW)"
        for days in windows
    ]
    return f"""
WITH all_rows AS (
  SELECT user_id, event_timestamp, epoch_us(event_timestamp) AS t, amount, NULL::BIGINT AS rid
  FROM read_parquet('{events}')
  UNION ALL
  SELECT user_id, event_timestamp, epoch_us(event_timestamp) AS t, NULL::DOUBLE AS amount, file_row_number AS rid
  FROM read_parquet('{entity}', file_row_number = true)
), framed AS (
  SELECT rid, user_id, event_timestamp, {', '.join(selects)}
  FROM all_rows
  WINDOW {', '.join(clauses)}
)
SELECT user_id, event_timestamp, {', '.join(FEATURES)}
FROM framed
WHERE rid IS NOT NULL
ORDER BY rid
"""


# -- the child process -----------------------------------------------------------------------------


def _run_operation(op: str, repo: Path, out: Path | None) -> dict[str, Any]:
    """Run one operation once, in this (fresh) process; return its figures."""
    _import_stack()
    if op == "baseline":
        return {"seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": _peak_rss_mb()}

    import duckdb
    import polars as pl

    from featurestore import FeatureStore

    events = repo / "data" / "events.parquet"
    entity = repo / "data" / "entity_rows.parquet"
    extra: dict[str, Any] = {}
    if op == "floor_polars":
        watch = _Stopwatch()
        frames = [pl.read_parquet(events), pl.read_parquet(entity)]
        timing = watch.read()
        return {**timing, "peak_rss_mb": _peak_rss_mb(), "rows_read": sum(f.height for f in frames)}
    if op == "floor_duckdb":
        watch = _Stopwatch()
        con = duckdb.connect()
        tables = [con.sql(f"SELECT * FROM read_parquet('{p}')").to_arrow_table() for p in (events, entity)]
        timing = watch.read()
        return {**timing, "peak_rss_mb": _peak_rss_mb(), "rows_read": sum(t.num_rows for t in tables)}
    if op == "ours":
        store = FeatureStore(repo)
        refs = [f"{VIEW}:{f}" for f in FEATURES]
        watch = _Stopwatch()
        entity_df = pl.read_parquet(entity)
        read_done = time.perf_counter()
        result = store.get_historical_features(entity_df, refs)
        timing = watch.read()
        extra["get_historical_features_seconds"] = time.perf_counter() - read_done
    elif op in BASELINE_OPS:
        sql = (range_join_sql if op == "duck_range" else window_sql)(events, entity)
        watch = _Stopwatch()
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")  # as FeatureStore's connection
        frame = pl.from_arrow(con.sql(sql).to_arrow_table())
        timing = watch.read()
        assert isinstance(frame, pl.DataFrame)
        result = frame
    else:
        raise ValueError(f"unknown operation {op!r}")
    peak = _peak_rss_mb()
    # Not timed: the result goes to a file for the parent to compare.
    if out is not None:
        result.select("user_id", "event_timestamp", *FEATURES).write_parquet(out)
    return {
        **timing,
        **extra,
        "peak_rss_mb": peak,
        "rows": result.height,
        "null_values": {f: result[f].null_count() for f in FEATURES},
    }


def worker_main(op: str, repo: Path, out: Path | None) -> None:
    result = _run_operation(op, repo, out)
    result["ru_maxrss_mb"] = _ru_maxrss_mb()  # reference only: includes the parent's peak (see training_set.py)
    print(json.dumps(result), flush=True)


# -- the parent: measurements ----------------------------------------------------------------------


def run_child(op: str, repo: Path, out: Path | None) -> dict[str, Any]:
    """Run one operation in a fresh interpreter (this script in worker mode), as training_set does;
    ``other_cpu_s`` is the CPU time the rest of the machine used meanwhile."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", op, "--repo", str(repo)]
    if out is not None:
        cmd += ["--out", str(out)]
    busy, children = _system_busy_seconds(), _children_cpu_seconds()
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    child_wall = time.perf_counter() - began
    busy_after, children_after = _system_busy_seconds(), _children_cpu_seconds()
    if proc.returncode != 0:
        raise RuntimeError(f"worker {op!r} failed with exit code {proc.returncode}:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["child_wall_s"] = child_wall
    if busy is not None and busy_after is not None:
        result["other_cpu_s"] = max(0.0, (busy_after - busy) - (children_after - children))
    return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [r["seconds"] for r in runs]
    others = [r["other_cpu_s"] / r["child_wall_s"] for r in runs if "other_cpu_s" in r]
    summary = {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "median_cpu_s": statistics.median(r["cpu_seconds"] for r in runs),
        "max_other_load": max(others) if others else None,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "runs": runs,
    }
    if runs and "get_historical_features_seconds" in runs[0]:
        summary["get_historical_features_median_s"] = statistics.median(
            r["get_historical_features_seconds"] for r in runs)
    return summary


# -- the checks ------------------------------------------------------------------------------------


def _compare(name: str, got: Any, want: Any) -> list[str]:
    """Differences between two results with the same rows (empty list: equal)."""
    import polars as pl

    problems = []
    if got.height != want.height:
        return [f"{name}: {got.height:,} rows, expected {want.height:,}"]
    for col in ("user_id", "event_timestamp"):
        if not got[col].cast(want[col].dtype).equals(want[col]):
            problems.append(f"{name}: column {col} differs (rows out of order?)")
    for feat in FEATURES:
        a, b = got[feat], want[feat]
        nulls = (a.is_null() != b.is_null()).sum()
        if nulls:
            problems.append(f"{name}: {feat}: {nulls:,} rows null on one side only")
        both = pl.DataFrame({"a": a.cast(pl.Float64), "b": b.cast(pl.Float64)}).drop_nulls()
        if feat.startswith(("amount_count", "amount_max")):
            bad = both.filter(pl.col("a") != pl.col("b"))
        else:
            scale = pl.max_horizontal(pl.col("a").abs(), pl.col("b").abs(), pl.lit(1.0))
            bad = both.filter((pl.col("a") - pl.col("b")).abs() > FLOAT_TOLERANCE * scale)
        if bad.height:
            first = bad.row(0)
            problems.append(f"{name}: {feat}: {bad.height:,} values differ (first: {first[0]!r} vs {first[1]!r})")
    return problems


def brute_force(repo: Path, rows: list[int]) -> Any:
    """The aggregates for the given entity rows, by Polars: every event of the row's user, filtered
    to ``(t - window, t]`` per aggregate. Independent of both DuckDB formulations."""
    import polars as pl

    entity = pl.read_parquet(repo / "data" / "entity_rows.parquet").with_row_index("rid")
    sample = entity.filter(pl.col("rid").is_in(rows))
    events = (pl.scan_parquet(repo / "data" / "events.parquet")
              .filter(pl.col("user_id").is_in(sample["user_id"].implode()))
              .rename({"event_timestamp": "ev_ts"}).collect())
    joined = sample.join(events, on="user_id", how="left")
    exprs = []
    for (fn, days), name in zip(AGGREGATIONS, FEATURES, strict=True):
        inside = (pl.col("ev_ts") > pl.col("event_timestamp") - timedelta(days=days)) & (
            pl.col("ev_ts") <= pl.col("event_timestamp"))
        values = pl.col("amount").filter(inside)
        n = values.count()
        expr = {
            "count": n.cast(pl.Int64),
            "sum": pl.when(n > 0).then(values.sum()),
            "mean": values.mean(),
            "max": values.max(),
        }[fn]
        exprs.append(expr.alias(name))
    out = joined.group_by("rid", "user_id", "event_timestamp").agg(exprs).sort("rid")
    return out.with_columns(pl.col(f).cast(pl.Float64) for f in FEATURES if not f.startswith("amount_count"))


def check_results(repo: Path, outdir: Path, sample: int, seed: int) -> dict[str, Any]:
    """Compare the three results on every row, and ours with the brute force on a sample."""
    import numpy as np
    import polars as pl

    results = {op: pl.read_parquet(outdir / f"{op}.parquet") for op in RESULT_OPS}
    problems = []
    for op in BASELINE_OPS:
        problems += _compare(f"{OPERATIONS[op]} vs ours", results[op], results["ours"])
    height = results["ours"].height
    edges = json.loads((repo / "data" / "edge_rows.json").read_text())
    rng = np.random.default_rng(seed + 1)
    n_edges = min(len(edges), sample // 3)
    picked = set(rng.choice(edges, n_edges, replace=False).tolist()) if n_edges else set()
    picked |= set(rng.choice(height, min(height, sample - n_edges), replace=False).tolist())
    rows = sorted(int(i) for i in picked)
    reference = brute_force(repo, rows)
    ours = results["ours"].with_row_index("rid").filter(pl.col("rid").is_in(rows)).drop("rid")
    problems += _compare("ours vs brute force (sample)", ours, reference.drop("rid"))
    return {
        "rows_compared": height,
        "sample_rows": len(rows),
        "sample_edge_rows": n_edges,
        "sample_empty_windows": int((reference["amount_count_1d"] == 0).sum()),
        "null_values": {f: results["ours"][f].null_count() for f in FEATURES},
        "equal": not problems,
        "problems": problems,
    }


def join_pairs(repo: Path) -> int:
    """(entity row, event) pairs in the longest window: the rows the range join aggregates."""
    import duckdb

    events, entity = repo / "data" / "events.parquet", repo / "data" / "entity_rows.parquet"
    longest = max(days for _, days in AGGREGATIONS)
    sql = (f"SELECT count(*) FROM read_parquet('{entity}') e JOIN read_parquet('{events}') v "
           f"ON v.user_id = e.user_id AND v.event_timestamp <= e.event_timestamp "
           f"AND v.event_timestamp > e.event_timestamp - {_interval_us(longest)}")
    return int(duckdb.connect().sql(sql).fetchall()[0][0])


# -- the report ------------------------------------------------------------------------------------


def add_ratios(results: dict[str, dict[str, Any]], entity_rows: int) -> dict[str, Any]:
    floor = results["floor_polars"]["median_s"]
    base = results["baseline"]["peak_rss_mb"]
    ours = results["ours"]["median_s"]
    for op, r in results.items():
        r["peak_over_baseline_mb"] = r["peak_rss_mb"] - base
        if op == "baseline":
            continue
        r["ratio_to_floor"] = r["median_s"] / floor if floor else None
        r["ours_over_this"] = ours / r["median_s"] if r["median_s"] else None
        if op in RESULT_OPS:
            r["entity_rows_per_s"] = entity_rows / r["median_s"]
    fastest = min(BASELINE_OPS, key=lambda op: results[op]["median_s"])
    return {
        "fastest_baseline": fastest,
        "ours_over_fastest": ours / results[fastest]["median_s"],
        "range_over_window": results["duck_range"]["median_s"] / results["duck_window"]["median_s"],
        "ours_over_window": ours / results["duck_window"]["median_s"],
        "ours_over_range": ours / results["duck_range"]["median_s"],
    }


def format_table(report: dict[str, Any]) -> str:
    scale = report["scale"]
    m = report["machine"]
    res = report["results"]
    cmp = report["comparison"]
    lines = [
        f"aggregations benchmark, scale {scale['name']}: {scale['events']:,} events, {scale['users']:,} users, "
        f"{scale['entity_rows']:,} entity rows, {len(FEATURES)} aggregates ({', '.join(FEATURES)}), "
        f"repeat {report['repeat']}",
        f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {m['mem_total_gb']} GB, Python {m['python']}, "
        f"duckdb {m['duckdb']}, polars {m['polars']}, pyarrow {m['pyarrow']}, commit {m['git_commit']} "
        f"(featurestore/ sha256 {m['featurestore_source_sha256']})",
        "",
    ]
    header = (f"{'operation':<28}{'median s':>10}{'min s':>9}{'max s':>9}{'cpu s':>8}{'peak MB':>10}"
              f"{'+base MB':>10}{'rows/s':>12}{'x floor':>9}{'ours x':>8}")
    lines += [header, "-" * len(header)]
    for op, label in OPERATIONS.items():
        r = res[op]
        if op == "baseline":
            lines.append(f"{label:<28}{'-':>10}{'-':>9}{'-':>9}{'-':>8}{r['peak_rss_mb']:>10.0f}{'-':>10}"
                         f"{'-':>12}{'-':>9}{'-':>8}")
            continue
        rate = f"{r['entity_rows_per_s']:,.0f}" if "entity_rows_per_s" in r else "-"
        lines.append(
            f"{label:<28}{r['median_s']:>10.3f}{r['min_s']:>9.3f}{r['max_s']:>9.3f}{r['median_cpu_s']:>8.2f}"
            f"{r['peak_rss_mb']:>10.0f}{r['peak_over_baseline_mb']:>10.0f}{rate:>12}{r['ratio_to_floor']:>9.2f}"
            f"{r['ours_over_this']:>8.2f}"
        )
    lines.append("")
    fastest = cmp["fastest_baseline"]
    lines.append(f"fastest hand-written baseline: {OPERATIONS[fastest]} ({res[fastest]['median_s']:.3f} s); "
                 f"ours / fastest = {cmp['ours_over_fastest']:.2f}")
    lines.append(f"hand-written range join / window functions = {cmp['range_over_window']:.2f} "
                 f"(above 1: the window formulation is faster)")
    lines.append(f"ours: get_historical_features alone {res['ours']['get_historical_features_median_s']:.3f} s "
                 f"(median; the rest is reading the entity file)")
    lines.append(f"range join pairs (entity row, event in the {max(d for _, d in AGGREGATIONS)}d window): "
                 f"{report['join_pairs']:,} ({report['join_pairs'] / scale['entity_rows']:.1f} per entity row)")
    for when, check in report["checks"].items():
        verdict = "EQUAL" if check["equal"] else "MISMATCH"
        lines.append(
            f"check ({when}): ours, range join and window functions on all {check['rows_compared']:,} rows, and ours "
            f"vs brute force on {check['sample_rows']:,} sampled rows ({check['sample_edge_rows']:,} on a window "
            f"edge, {check['sample_empty_windows']:,} with an empty 1d window): {verdict}")
        lines += [f"  {p}" for p in check["problems"]]
    nulls = report["checks"]["last round"]["null_values"]
    lines.append("null values in ours: " + ", ".join(f"{f} {n:,}" for f, n in nulls.items()))
    # The imports-only child is left out: it times nothing, and its short life makes the figure noisy.
    others = {op: r["max_other_load"] for op, r in res.items()
              if op != "baseline" and r.get("max_other_load") is not None}
    if others:
        worst = max(others, key=lambda op: others[op])
        note = "quiet" if others[worst] < 0.1 else "BUSY: other processes competed for the CPUs, times are inflated"
        lines.append(f"machine load: other processes kept up to {others[worst]:.2f} CPUs busy during a measured run "
                     f"({OPERATIONS[worst]}): {note}; worst run per operation: "
                     + ", ".join(f"{op} {load:.2f}" for op, load in others.items()))
    data = report["data"]
    lines.append("inputs: " + ", ".join(
        f"{n} {d['rows']:,} rows / {d['row_groups']} row groups / {d['bytes'] / 1e6:.1f} MB" for n, d in data.items()))
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    scale = SCALES[args.scale]
    workdir = (args.workdir or RESULTS / "work-aggregations").resolve()
    began = time.perf_counter()
    repo, generated = prepare_repo(scale, workdir, args.seed, args.regenerate)
    gen_s = time.perf_counter() - began
    print(f"repo: {repo} (data {'generated' if generated else 'cached'}, {gen_s:.1f} s)", flush=True)
    outdir = workdir / scale.name / "out"
    outdir.mkdir(parents=True, exist_ok=True)
    reset_store(repo)
    warm_page_cache(repo)
    pairs = join_pairs(repo)
    load_start = list(os.getloadavg())
    idle_load = other_load()
    if idle_load is not None and idle_load >= 0.1:
        print(f"warning: before measuring, other processes keep {idle_load:.2f} CPUs busy; "
              "wall times will be inflated", flush=True)

    log = not args.quiet
    runs: dict[str, list[dict[str, Any]]] = {op: [] for op in OPERATIONS}
    checks: dict[str, dict[str, Any]] = {}
    rounds = args.warmup + args.repeat
    # Rounds: every operation once per round, so that a change in the machine's load hits all alike.
    for i in range(rounds):
        kind = "warm-up" if i < args.warmup else f"run {i - args.warmup + 1}/{args.repeat}"
        for op in OPERATIONS:
            if op == "baseline" and i < args.warmup:
                continue
            result = run_child(op, repo, outdir / f"{op}.parquet" if op in RESULT_OPS else None)
            if log:
                print(f"  {kind} {op}: {result['seconds']:.3f} s (cpu {result['cpu_seconds']:.2f} s), "
                      f"{result['peak_rss_mb']:.0f} MB", flush=True)
            if i >= args.warmup:
                runs[op].append(result)
        if i in (0, rounds - 1):
            when = "first round" if i == 0 else "last round"
            checks[when] = check_results(repo, outdir, args.sample, args.seed)
            if log:
                print(f"  check ({when}): {'equal' if checks[when]['equal'] else 'MISMATCH'}", flush=True)
            if not checks[when]["equal"]:  # timing answers that differ would compare nothing
                print("results differ, stopping:\n  " + "\n  ".join(checks[when]["problems"]), file=sys.stderr)
                sys.exit(1)
    if "last round" not in checks:
        checks["last round"] = checks["first round"]

    results = {op: summarise(r) for op, r in runs.items()}
    comparison = add_ratios(results, scale.entity_rows)
    return {
        "benchmark": "aggregations",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "scale": {"name": scale.name, "users": scale.users, "events": scale.events,
                  "entity_rows": scale.entity_rows, "seed": args.seed},
        "repeat": args.repeat,
        "warmup": args.warmup,
        "aggregations": [{"function": fn, "window_days": days, "name": name}
                         for (fn, days), name in zip(AGGREGATIONS, FEATURES, strict=True)],
        "workdir": str(workdir),
        "data_generated_s": gen_s if generated else None,
        "data": data_info(repo),
        "join_pairs": pairs,
        "sql": {"duck_range": range_join_sql(Path("<events>"), Path("<entity_rows>")),
                "duck_window": window_sql(Path("<events>"), Path("<entity_rows>"))},
        "machine": machine_info(),
        "load_average": {"start": load_start, "end": list(os.getloadavg())},
        "other_load_before_start": idle_load,
        "checks": checks,
        "comparison": comparison,
        "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=list(SCALES), default="S", help="data size (default: S)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per operation (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default: 1)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the repo and its cached data live (default: benchmarks/results/work-aggregations)")
    parser.add_argument("--json", type=Path, default=None,
                        help="result file (default: benchmarks/results/aggregations_<scale>.json)")
    parser.add_argument("--regenerate", action="store_true", help="generate the data even if cached")
    parser.add_argument("--seed", type=int, default=7, help="seed of the data generator (default: 7)")
    parser.add_argument("--sample", type=int, default=3000,
                        help="entity rows checked against a brute-force computation (default: 3000)")
    parser.add_argument("--quiet", action="store_true", help="print only the final table")
    parser.add_argument("--worker", choices=list(OPERATIONS), help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # a child process: measure one operation on --repo
        worker_main(args.worker, args.repo, args.out)
        return
    if args.repeat < 1 or args.warmup < 0 or args.sample < 1:
        parser.error("--repeat and --sample must be at least 1, --warmup at least 0")

    report = run_benchmark(args)
    print()
    print(format_table(report))
    out = args.json or RESULTS / f"aggregations_{args.scale}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    if not all(c["equal"] for c in report["checks"].values()):
        print("results differ: the comparison is not valid (see the check lines above)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
