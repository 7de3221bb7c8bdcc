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

5. With ``--online`` (the default; ``--no-online`` skips it): online materialization of the same
   view into an embedded Valkey server of its own (``online.py``'s ``Server``: background saves
   off, stopped at the end, also on errors, Ctrl-C and SIGTERM; ``featurestore.yaml`` then holds
   its URL and password, owner-readable only, never printed). Online values are precomputed at
   materialization for the run's end instant E (``featurestore/materialize.py``,
   ``aggregates_query``). E is the end of the data (2026-04-01). In each round, after the
   operations above, each in a fresh child:

   * ``online_full``: ``materialize(2026-01-01, E, views=["spend"])`` after ``FLUSHALL``: every user
     with an event; wall time, select (registry + DuckDB's aggregates into a temp table) / write
     split, entities per second, peak memory, the server's CPU time;
   * ``online_incremental``: then ``materialize(E, E + 1 day)`` (no ``FLUSHALL``): the users with an
     event in ``(E - 30d, E + 1d]``, whose windows slid;
   * ``plain_latest``: a plain view of the same events (latest ``amount`` per user), the same users;
   * ``plain_precomputed``: a plain view over a file of the four aggregates at E, one row per user
     (written once by a hand-written DuckDB query, not timed): the same entities and values as the
     aggregating view's, without computing them;
   * ``online_query``: the SQL of ``aggregates_query`` for the full run computed into Arrow,
     nothing written: the computing part alone;
   * a ``redis-benchmark`` SET floor (``-P 64``, as many keys as the full run, values of the mean
     size of its values), if ``redis-benchmark`` is installed.

   Checks (not timed; first and last round, exit status 1 on a mismatch): after the full run and
   after the incremental one, ``get_online_features`` equals ``get_historical_features`` at E
   (resp. E + 1 day), and both a brute-force Polars computation, for a sample of users (random,
   about 2% without events, plus users with an event near a window edge); users are PRESENT iff a
   run covered one of their events, with that run's end as event time; entity counts per run
   equal counts made by hand from the events. After the last check: in-process
   ``get_online_features`` latency of the four features. The last line states what a tile
   approach (partial aggregates per time bucket, merged at read time) would have to beat.

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
(entity rows, and users online, checked against the brute-force computation, default 3000),
``--online`` / ``--no-online``, ``--quiet``.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import signal
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
    machine_line,
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

# Online materialization (``--online``): the instant E at which online values are computed is the
# end of the data span; the incremental run goes one day further.
END = START + timedelta(days=DAYS)
NEXT_END = END + timedelta(days=1)
PLAIN_LATEST = f"{VIEW}_latest"  # plain view over the same events: the latest amount per user
PLAIN_PRECOMPUTED = f"{VIEW}_precomputed"  # plain view over a file of the aggregates at E
PRECOMPUTED_FILE = "aggregates_at_end.parquet"
EDGE_SLACK = timedelta(minutes=1)  # online check: users with an event this close to a window edge
# The online operations, in the order they run within a round and are printed.
ONLINE_OPERATIONS = {
    "online_query": "aggregates query only (to Arrow)",
    "online_full": "materialize aggregates, full span",
    "online_incremental": "materialize aggregates, +1 day",
    "plain_latest": "materialize plain: latest event",
    "plain_precomputed": "materialize plain: precomputed",
}
# The materializations: (view, start, end).
ONLINE_WINDOWS = {
    "online_full": (VIEW, START, END),
    "online_incremental": (VIEW, END, NEXT_END),
    "plain_latest": (PLAIN_LATEST, START, END),
    # The file's rows are at E, and a plain window [start, end) excludes its end.
    "plain_precomputed": (PLAIN_PRECOMPUTED, START, NEXT_END),
}

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

# With --online: two plain (non-aggregating) views of the same users, as baselines.
PLAIN_VIEWS_PY = '''
# Baselines of the online benchmark: a plain view of the same events (latest amount per user), and
# one over a file holding each user's four aggregates at the end of the data (one row per user).
{latest} = FeatureView("{latest}", entities=[user], source=events, schema=[Field("amount", Float64)])
{precomputed} = FeatureView(
    "{precomputed}",
    entities=[user],
    source=FileSource("data/{file}", timestamp_field="event_timestamp"),
    schema=[
{fields}
    ],
)
'''


def features_py(online: bool = False) -> str:
    lines = [f'        Aggregation("amount", "{fn}", timedelta(days={days})),' for fn, days in AGGREGATIONS]
    text = FEATURES_PY.format(view=VIEW, aggregations="\n".join(lines))
    if online:
        fields = [f'        Field("{name}", {"Int64" if fn == "count" else "Float64"}),'
                  for (fn, _), name in zip(AGGREGATIONS, FEATURES, strict=True)]
        text = text.replace("Float64\n", "Float64, Int64\n", 1)
        text += PLAIN_VIEWS_PY.format(latest=PLAIN_LATEST, precomputed=PLAIN_PRECOMPUTED, file=PRECOMPUTED_FILE,
                                      fields="\n".join(fields))
    return text


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


def prepare_repo(scale: Scale, workdir: Path, seed: int, regenerate: bool,
                 online: bool = False) -> tuple[Path, bool]:
    """The repo under ``workdir/<scale>/repo`` with its data; True if the data was generated."""
    repo = workdir / scale.name / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "featurestore.yaml").write_text("project: aggregations_benchmark\n")
    (repo / "features.py").write_text(features_py(online))
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


def _ts_sql(instant: datetime) -> str:
    return f"TIMESTAMP '{instant.replace(tzinfo=None).isoformat(sep=' ')}'"


def precomputed_sql(events: Path) -> str:
    """Each user's four aggregates at E over all its events, one row per user with an event (the
    entities a full online run writes), by hand: the input of the plain precomputed view."""
    selects = []
    for (fn, days), name in zip(AGGREGATIONS, FEATURES, strict=True):
        selects.append(f"{_SQL_FUNCTIONS[fn]}(amount) FILTER (WHERE event_timestamp > {_ts_sql(END)} - "
                       f"{_interval_us(days)}) AS {name}")
    return (f"SELECT user_id, {_ts_sql(END)} AS event_timestamp, {', '.join(selects)} "
            f"FROM read_parquet('{events}') WHERE event_timestamp <= {_ts_sql(END)} GROUP BY user_id ORDER BY user_id")


def write_precomputed(repo: Path) -> bool:
    """``data/aggregates_at_end.parquet`` (not timed; kept while it is newer than the events file).
    True if it was written."""
    import duckdb

    data = repo / "data"
    out, events = data / PRECOMPUTED_FILE, data / "events.parquet"
    if out.is_file() and out.stat().st_mtime >= events.stat().st_mtime:
        return False
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    tmp = out.with_suffix(".tmp")
    con.execute(f"COPY ({precomputed_sql(events)}) TO '{tmp}' (FORMAT parquet)")
    tmp.replace(out)
    return True


def online_facts(repo: Path) -> dict[str, int]:
    """What each online run should touch, counted by hand from the events."""
    import duckdb

    events = repo / "data" / "events.parquet"
    longest = max(days for _, days in AGGREGATIONS)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")

    def count(what: str, lower: datetime, upper: datetime) -> int:
        sql = (f"SELECT {what} FROM read_parquet('{events}') WHERE event_timestamp > {_ts_sql(lower)} - "
               f"{_interval_us(longest)} AND event_timestamp <= {_ts_sql(upper)}")
        return int(con.sql(sql).fetchall()[0][0])

    return {
        # Entities with an event in (start - longest window, end]: the rows of each run.
        "full_entities": count("count(DISTINCT user_id)", START, END),
        "incremental_entities": count("count(DISTINCT user_id)", END, NEXT_END),
        # Events the runs' queries read (the scan before grouping).
        "full_events_scanned": count("count(*)", START, END),
        "incremental_events_scanned": count("count(*)", END, NEXT_END),
        "events_after_end": int(con.sql(f"SELECT count(*) FROM read_parquet('{events}') "
                                        f"WHERE event_timestamp > {_ts_sql(END)}").fetchall()[0][0]),
        "plain_latest_entities": int(con.sql(
            f"SELECT count(DISTINCT user_id) FROM read_parquet('{events}') WHERE event_timestamp >= "
            f"{_ts_sql(START)} AND event_timestamp < {_ts_sql(END)}").fetchall()[0][0]),
    }


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


def _run_online(op: str, repo: Path) -> dict[str, Any]:
    """One online operation: the aggregates query alone, or one materialization (``ONLINE_WINDOWS``)
    with its select / write split (``online.py``'s instrumentation: the ``progress`` callback that
    precedes the writes, and wrappers around the batch reader and the store's ``write``)."""
    for module in ("redis", "featurestore.materialize", "featurestore.online.redis", "featurestore.offline.aggregate"):
        __import__(module)
    from featurestore import FeatureStore
    from featurestore.materialize import aggregates_query
    from featurestore.timeutil import to_naive_utc

    store = FeatureStore(repo)
    if op == "online_query":
        # What materialization's select runs for the full span, computed into Arrow, nothing written.
        view = store.get_feature_view(VIEW)
        watch = _Stopwatch()
        con = store._duckdb()
        con.execute("SET preserve_insertion_order = false")  # as materialization's connection
        query = aggregates_query(con, store._offline(), view, to_naive_utc(START), to_naive_utc(END))
        table = con.sql(query.sql("duckdb")).to_arrow_table()
        timing = watch.read()
        con.close()
        return {**timing, "peak_rss_mb": _peak_rss_mb(), "rows": table.num_rows, "written": 0,
                "arrow_bytes": table.nbytes, "sql": query.sql("duckdb")}

    from online import _instrument, write_phases

    name, start, end = ONLINE_WINDOWS[op]
    views, progress = _instrument(store)  # connects to the server (not timed)
    watch = _Stopwatch()
    runs = store.materialize(start, end, views=[name], progress=progress)
    timing = watch.read()
    peak = _peak_rss_mb()
    store.close()
    (run,) = runs
    return {**timing, "peak_rss_mb": peak, "rows": run.rows, "written": run.written,
            **write_phases(views[name], watch.wall)}


def _run_operation(op: str, repo: Path, out: Path | None) -> dict[str, Any]:
    """Run one operation once, in this (fresh) process; return its figures."""
    _import_stack()
    if op == "baseline":
        return {"seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": _peak_rss_mb()}
    if op in ONLINE_OPERATIONS:
        return _run_online(op, repo)

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


def run_child(op: str, repo: Path, out: Path | None, server: Any = None) -> dict[str, Any]:
    """Run one operation in a fresh interpreter (this script in worker mode), as training_set does;
    ``other_cpu_s`` is the CPU time the rest of the machine used meanwhile (not counting the child
    and, with ``server``, the benchmark's own Valkey server, whose CPU time is ``server_cpu_s``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", op, "--repo", str(repo)]
    if out is not None:
        cmd += ["--out", str(out)]
    server_cpu = server.cpu_seconds() if server is not None else 0.0
    busy, children = _system_busy_seconds(), _children_cpu_seconds()
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    child_wall = time.perf_counter() - began
    busy_after, children_after = _system_busy_seconds(), _children_cpu_seconds()
    server_s = server.cpu_seconds() - server_cpu if server is not None else 0.0
    if proc.returncode != 0:
        stderr = proc.stderr if server is None else proc.stderr.replace(server.password, "***")
        raise RuntimeError(f"worker {op!r} failed with exit code {proc.returncode}:\n{stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["child_wall_s"] = child_wall
    if server is not None:
        result["server_cpu_s"] = server_s
    if busy is not None and busy_after is not None:
        result["other_cpu_s"] = max(0.0, (busy_after - busy) - (children_after - children) - server_s)
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
    return brute_force_frame(repo, entity.filter(pl.col("rid").is_in(rows)))


def brute_force_frame(repo: Path, sample: Any) -> Any:
    """``brute_force`` for a frame of ``rid``, ``user_id``, ``event_timestamp``."""
    import polars as pl

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


def check_online(repo: Path, instant: datetime, runs: list[tuple[datetime, datetime]], sample: int, seed: int,
                 users: int) -> dict[str, Any]:
    """``get_online_features`` against ``get_historical_features`` at ``instant`` (and both against
    the brute force) for a sample of users, after the materializations ``runs`` (start, end) since
    the last FLUSHALL, the last one ending at ``instant``.

    The sample mixes random user ids (about 2% without any event) with users that have an event
    within ``EDGE_SLACK`` of a window edge: a window's exclusive lower bound (``instant - window``)
    or ``instant`` itself (events exactly on one are rare: about one per second of data at M, none
    after E; the report counts them). Expected: a user is PRESENT iff a run's ``(start - longest window,
    end]`` holds one of its events, with the end of the last such run as event time; PRESENT values
    equal the training set's (counts and max exactly, sum and mean to 1e-9 relative); NOT_FOUND
    users have empty windows in the training set (count 0, the rest null)."""
    import numpy as np
    import polars as pl

    from featurestore import FeatureStore

    longest = timedelta(days=max(days for _, days in AGGREGATIONS))
    naive = instant.replace(tzinfo=None)
    events = pl.scan_parquet(repo / "data" / "events.parquet")
    # Window edges: each window's exclusive lower bound, and the instant itself (inclusive).
    edges = sorted({naive} | {naive - timedelta(days=days) for _, days in AGGREGATIONS})
    exact_times = pl.Series(edges, dtype=pl.Datetime("us"))
    near = pl.any_horizontal([(pl.col("event_timestamp") - edge).abs() <= EDGE_SLACK for edge in edges])
    edge_users = (events.filter(near).select("user_id").unique().collect()["user_id"].sort().to_list())
    rng = np.random.default_rng(seed + 2)
    n_edges = min(len(edge_users), sample // 3)
    picked = set(rng.choice(edge_users, n_edges, replace=False).tolist()) if n_edges else set()
    pool = int(users * 1.02)
    picked |= set(rng.choice(pool, min(pool, sample - n_edges), replace=False).tolist())
    ids = sorted(int(u) for u in picked)

    # The expected event time of each sampled user's online values (None: never written).
    mine = events.filter(pl.col("user_id").is_in(pl.Series(ids).implode())).collect()
    on_edge = mine.filter(pl.col("event_timestamp").is_in(exact_times.implode()))["user_id"].n_unique()
    expected: dict[int, datetime | None] = dict.fromkeys(ids)
    for start, end in runs:
        lo, hi = (start - longest).replace(tzinfo=None), end.replace(tzinfo=None)
        hit = mine.filter((pl.col("event_timestamp") > lo) & (pl.col("event_timestamp") <= hi))["user_id"]
        for u in hit.unique().to_list():
            expected[u] = hi

    frame = pl.DataFrame({"user_id": ids, "event_timestamp": [naive] * len(ids)},
                         schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us")})
    refs = [f"{VIEW}:{f}" for f in FEATURES]
    with FeatureStore(repo) as store:
        response = store.get_online_features(refs, {"user_id": ids})
        training = store.get_historical_features(frame, refs)
    online = response.to_polars(include_statuses=True, include_event_timestamps=True)
    reference = brute_force_frame(repo, frame.with_row_index("rid")).drop("rid")

    problems = []
    statuses = online.select(f"{f}__status" for f in FEATURES)
    if not all(statuses[c].equals(statuses[statuses.columns[0]]) for c in statuses.columns):
        problems.append("the features of one entity have different statuses")
    present = (statuses[statuses.columns[0]] == "PRESENT").to_list()
    want_present = [expected[u] is not None for u in ids]
    if present != want_present:
        wrong = [u for u, a, b in zip(ids, present, want_present, strict=True) if a != b]
        problems.append(f"{len(wrong):,} users PRESENT / NOT_FOUND against the expectation (first: user {wrong[0]})")
    got_times = online[f"{FEATURES[0]}__event_timestamp"].dt.replace_time_zone(None).to_list()
    bad_times = [u for u, t in zip(ids, got_times, strict=True) if t != expected[u]]
    if bad_times:
        problems.append(f"{len(bad_times):,} users with an unexpected online event time (first: user {bad_times[0]}: "
                        f"{got_times[ids.index(bad_times[0])]} instead of {expected[bad_times[0]]})")
    mask = pl.Series(present)
    got = frame.filter(mask).with_columns(online.filter(mask).select(FEATURES))
    problems += _compare(f"online vs training set at {naive}", got, training.filter(mask))
    problems += _compare(f"training set vs brute force at {naive}", training, reference)
    missing = training.filter(~mask)
    empty = (pl.all_horizontal(pl.col(f) == 0 if f.startswith("amount_count") else pl.col(f).is_null()
                               for f in FEATURES))
    if missing.height and not missing.select(empty.all()).item():
        problems.append("a NOT_FOUND user has a non-empty window in the training set")
    return {
        "instant": naive.isoformat(),
        "entities": len(ids),
        "edge_entities": n_edges,
        "exactly_on_edge": on_edge,
        "present": int(sum(present)),
        "not_found": len(ids) - int(sum(present)),
        "present_empty_1d": int(got.select((pl.col("amount_count_1d") == 0).sum()).item()),
        "present_empty_30d": int(got.select(pl.col("amount_mean_30d").is_null().sum()).item()),
        "equal": not problems,
        "problems": problems,
    }


def online_latency(repo: Path, users: int, seed: int) -> dict[str, Any]:
    """In-process ``get_online_features`` of the four aggregates (in the parent, after the last
    check): what a read costs when the values are precomputed, the budget a tile design would add
    its merge to."""
    import numpy as np

    from featurestore import FeatureStore

    refs = [f"{VIEW}:{f}" for f in FEATURES]
    rng = np.random.default_rng(seed + 3)
    out: dict[str, Any] = {}
    with FeatureStore(repo) as store:
        for per_call, warmup, calls in ((1, 100, 1000), (100, 10, 100)):
            times = []
            for i in range(warmup + calls):
                ids = rng.integers(0, users, per_call).tolist()
                began = time.perf_counter_ns()
                store.get_online_features(refs, {"user_id": ids})
                if i >= warmup:
                    times.append((time.perf_counter_ns() - began) / 1e6)
            times.sort()
            out[str(per_call)] = {"calls": calls, "p50_ms": times[len(times) // 2],
                                  "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))]}
    return out


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
        machine_line(m),
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


def set_online_url(repo: Path, url: str) -> None:
    """Point the repo at the benchmark's server (the file then holds its password: owner-only)."""
    config = repo / "featurestore.yaml"
    config.write_text("project: aggregations_benchmark\n\n# Written by benchmarks/aggregations.py: its own "
                      f"server, for this run only.\nonline_store:\n  url: \"{url}\"\n")
    config.chmod(0o600)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise_online(runs: dict[str, list[dict[str, Any]]], floors: list[dict[str, Any]], baseline_mb: float,
                     facts: dict[str, int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for op, op_runs in runs.items():
        r = summarise(op_runs)
        r["rows"] = op_runs[0]["rows"]
        r["rows_constant"] = all(x["rows"] == r["rows"] for x in op_runs)
        r["entities_per_s"] = r["rows"] / r["median_s"]
        r["us_per_entity"] = r["median_s"] / r["rows"] * 1e6 if r["rows"] else None
        r["peak_over_baseline_mb"] = r["peak_rss_mb"] - baseline_mb
        r["median_server_cpu_s"] = _median([x.get("server_cpu_s", 0.0) for x in op_runs])
        if op != "online_query":
            for key in ("select_s", "write_s", "fetch_s", "encode_s", "send_s"):
                r[f"median_{key}"] = _median([x[key] for x in op_runs])
            r["write_entities_per_s"] = r["rows"] / r["median_write_s"] if r["median_write_s"] else None
            r["key_bytes_mean"] = op_runs[0]["key_bytes"] / max(1, r["rows"])
            r["value_bytes_mean"] = op_runs[0]["value_bytes"] / max(1, r["rows"])
            r["all_written"] = all(x["written"] == x["rows"] for x in op_runs)
        results[op] = r
    full, incr, query = results["online_full"], results["online_incremental"], results["online_query"]
    expected = {"online_full": facts["full_entities"], "online_incremental": facts["incremental_entities"],
                "online_query": facts["full_entities"], "plain_latest": facts["plain_latest_entities"],
                "plain_precomputed": facts["full_entities"]}
    comparison: dict[str, Any] = {
        "rows_as_expected": {op: results[op]["rows"] == n and results[op]["rows_constant"]
                             for op, n in expected.items()},
        "full_keys_equal_rows": all(x["keys"] == x["rows"] for x in runs["online_full"]),
        "query_share_of_full": query["median_s"] / full["median_s"],
        "select_share_of_full": full["median_select_s"] / full["median_s"],
        "full_over_query": full["median_s"] / query["median_s"],
        "full_over_plain_latest": full["median_s"] / results["plain_latest"]["median_s"],
        "full_over_plain_precomputed": full["median_s"] / results["plain_precomputed"]["median_s"],
        "incremental_share_of_entities": incr["rows"] / full["rows"],
        "incremental_over_full": incr["median_s"] / full["median_s"],
        "redis_bytes_per_entity": _median([x["used_memory_delta"] / max(1, x["keys"]) for x in runs["online_full"]]),
    }
    floor = None
    if floors:
        floor = {"command": floors[-1]["command"], "runs": floors, "median_rps": _median([f["rps"] for f in floors])}
        # Per round: the floor against that round's full run (run seconds apart).
        pairs = list(zip(floors, runs["online_full"], strict=False))
        floor["x_full_write"] = _median([f["rps"] / (m["rows"] / m["write_s"]) for f, m in pairs])
        floor["x_full_end_to_end"] = _median([f["rps"] / (m["rows"] / m["seconds"]) for f, m in pairs])
        floor["x_plain_precomputed_write"] = _median(
            [f["rps"] / (m["rows"] / m["write_s"]) for f, m in zip(floors, runs["plain_precomputed"], strict=False)])
    return {"results": results, "comparison": comparison, "floor_set": floor}


def tile_line(online: dict[str, Any], facts: dict[str, int]) -> str:
    """What the alternative design, tiles (per-entity partial aggregates per time bucket, merged at
    read time), would have to beat, from the measured costs of precomputing at materialization."""
    res, cmp = online["results"], online["comparison"]
    full, incr = res["online_full"], res["online_incremental"]
    lat = online.get("latency") or {}
    longest = max(days for _, days in AGGREGATIONS)
    read = (f" on top of reads of {lat['1']['p50_ms']:.2f} ms (1 entity) / {lat['100']['p50_ms']:.2f} ms (100) p50 "
            "measured here") if lat else ""
    return (f"tiles would have to beat, per run: {full['us_per_entity']:.1f} us per entity (full span: "
            f"{full['median_s']:.2f} s for {full['rows']:,} entities, "
            f"{full['median_write_s'] / full['median_s']:.0%} of it writing) and {incr['us_per_entity']:.1f} us per "
            f"entity of a 1-day increment ({incr['median_s']:.2f} s for {incr['rows']:,} entities = "
            f"{cmp['incremental_share_of_entities']:.0%}, with {facts['events_after_end']:,} new events: every "
            f"{longest}-day window slid); precomputation costs "
            f"entities x runs, tiles cost new events per run plus a merge of up to {longest} daily tiles per read"
            f"{read}")


def format_online(report: dict[str, Any]) -> str:
    online = report["online"]
    res, cmp, facts = online["results"], online["comparison"], online["facts"]
    lines = [
        "",
        f"online materialization of the same view: E = {END.date()} (end of the data), full span "
        f"materialize({START.date()}, E), incremental materialize(E, {NEXT_END.date()}); "
        f"{report['online_server']['name']} {report['online_server']['version']} embedded on 127.0.0.1, "
        "background saves off, FLUSHALL before every run but the incremental one",
    ]
    header = (f"{'online operation':<36}{'median s':>10}{'min s':>8}{'max s':>8}{'cpu s':>8}{'srv s':>7}"
              f"{'peak MB':>9}{'+base MB':>10}{'entities':>11}{'entities/s':>12}{'select s':>10}{'write s':>9}")
    lines += [header, "-" * len(header)]
    for op, label in ONLINE_OPERATIONS.items():
        r = res[op]
        sel = f"{r['median_select_s']:.3f}" if "median_select_s" in r else "-"
        wr = f"{r['median_write_s']:.3f}" if "median_write_s" in r else "-"
        lines.append(f"{label:<36}{r['median_s']:>10.3f}{r['min_s']:>8.3f}{r['max_s']:>8.3f}{r['median_cpu_s']:>8.2f}"
                     f"{r['median_server_cpu_s']:>7.2f}{r['peak_rss_mb']:>9.0f}{r['peak_over_baseline_mb']:>10.0f}"
                     f"{r['rows']:>11,}{r['entities_per_s']:>12,.0f}{sel:>10}{wr:>9}")
    full = res["online_full"]
    lines.append(f"  full run: select (registry + DuckDB aggregates into a temp table) "
                 f"{cmp['select_share_of_full']:.0%}, write {full['median_write_s'] / full['median_s']:.0%} "
                 f"(fetch {full['median_fetch_s']:.2f} s, "
                 f"encode {full['median_encode_s']:.2f} s, send {full['median_send_s']:.2f} s); the query alone "
                 f"into Arrow is {cmp['query_share_of_full']:.0%} of the run; keys {full['key_bytes_mean']:.0f} B, "
                 f"values {full['value_bytes_mean']:.0f} B, Redis {cmp['redis_bytes_per_entity']:.0f} B per entity")
    lines.append(f"  aggregates full run / plain view of the latest event = {cmp['full_over_plain_latest']:.2f}, "
                 f"/ plain view of the precomputed aggregates = {cmp['full_over_plain_precomputed']:.2f} "
                 f"(same entities and values: only the computing differs)")
    floor = online.get("floor_set")
    if floor:
        lines.append(f"  floor: redis-benchmark SET -P 64 of {full['rows']:,} keys of {online['floor_value_size']} B: "
                     f"{floor['median_rps']:,.0f} req/s; full run's write phase x{floor['x_full_write']:.2f} slower "
                     f"(end to end x{floor['x_full_end_to_end']:.2f}), plain precomputed's write phase "
                     f"x{floor['x_plain_precomputed_write']:.2f}")
    lines.append(f"  events scanned by the query: full {facts['full_events_scanned']:,} (all of (start - 30d, E]), "
                 f"incremental {facts['incremental_events_scanned']:,}; incremental / full time = "
                 f"{cmp['incremental_over_full']:.2f} for {cmp['incremental_share_of_entities']:.0%} of the entities")
    ok = all(cmp["rows_as_expected"].values()) and cmp["full_keys_equal_rows"]
    lines.append(f"  entities per run as counted by hand from the events (full {facts['full_entities']:,}, incremental "
                 f"{facts['incremental_entities']:,}, plain latest {facts['plain_latest_entities']:,}) and DBSIZE "
                 f"after the full run: {'as expected' if ok else 'UNEXPECTED: ' + str(cmp['rows_as_expected'])}")
    for when, check in online["checks"].items():
        verdict = "EQUAL" if check["equal"] else "MISMATCH"
        lines.append(f"  check ({when}): get_online_features vs get_historical_features at {check['instant']} (and "
                     f"the brute force) on {check['entities']:,} users ({check['edge_entities']:,} with an event "
                     f"within {EDGE_SLACK.total_seconds():.0f} s of a window edge, {check['exactly_on_edge']:,} "
                     f"exactly on one; {check['present']:,} present, {check['not_found']:,} never written, "
                     f"{check['present_empty_1d']:,} present with an empty 1d window): {verdict}")
        lines += [f"    {p}" for p in check["problems"]]
    lat = online.get("latency")
    if lat:
        lines.append(f"  get_online_features of the 4 aggregates in process: 1 entity p50 {lat['1']['p50_ms']:.3f} "
                     f"ms / p99 {lat['1']['p99_ms']:.3f} ms ({lat['1']['calls']} calls), 100 entities p50 "
                     f"{lat['100']['p50_ms']:.2f} ms / p99 {lat['100']['p99_ms']:.2f} ms "
                     f"({lat['100']['calls']} calls)")
    others = {op: r["max_other_load"] for op, r in res.items() if r.get("max_other_load") is not None}
    if others:
        worst = max(others, key=lambda op: others[op])
        note = "quiet" if others[worst] < 0.1 else "BUSY: other processes competed for the CPUs, times are inflated"
        lines.append(f"  machine load: other processes kept up to {others[worst]:.2f} CPUs busy during a measured "
                     f"online run ({ONLINE_OPERATIONS[worst]}; not counting this benchmark's server): {note}")
    lines.append(tile_line(online, facts))
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    scale = SCALES[args.scale]
    workdir = (args.workdir or RESULTS / "work-aggregations").resolve()
    began = time.perf_counter()
    repo, generated = prepare_repo(scale, workdir, args.seed, args.regenerate, args.online)
    gen_s = time.perf_counter() - began
    print(f"repo: {repo} (data {'generated' if generated else 'cached'}, {gen_s:.1f} s)", flush=True)
    outdir = workdir / scale.name / "out"
    outdir.mkdir(parents=True, exist_ok=True)
    server: Any = None
    try:
        facts: dict[str, int] = {}
        if args.online:
            from online import Server

            write_precomputed(repo)
            facts = online_facts(repo)
            server = Server(workdir / "server")
            set_online_url(repo, server.url)  # before apply: nothing may start an embedded server of its own
            print(f"server: 127.0.0.1:{server.handle.port}; entities written by a full online run: "
                  f"{facts['full_entities']:,}", flush=True)
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
        online_runs: dict[str, list[dict[str, Any]]] = {op: [] for op in ONLINE_OPERATIONS}
        floors: list[dict[str, Any]] = []
        checks: dict[str, dict[str, Any]] = {}
        online_checks: dict[str, dict[str, Any]] = {}
        latency = None
        value_size = None
        floor_binary = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"
        has_floor = args.online and Path(floor_binary).is_file()
        rounds = args.warmup + args.repeat

        def stop_on(check: dict[str, Any], when: str) -> None:
            if log:
                print(f"  check ({when}): {'equal' if check['equal'] else 'MISMATCH'}", flush=True)
            if not check["equal"]:  # timing answers that differ would compare nothing
                print("results differ, stopping:\n  " + "\n  ".join(check["problems"]), file=sys.stderr)
                sys.exit(1)

        # Rounds: every operation once per round, so that a change in the machine's load hits all alike.
        for i in range(rounds):
            kind = "warm-up" if i < args.warmup else f"run {i - args.warmup + 1}/{args.repeat}"
            measured = i >= args.warmup
            when = "first round" if i == 0 else "last round" if i == rounds - 1 else None
            for op in OPERATIONS:
                if op == "baseline" and not measured:
                    continue
                result = run_child(op, repo, outdir / f"{op}.parquet" if op in RESULT_OPS else None, server)
                if log:
                    print(f"  {kind} {op}: {result['seconds']:.3f} s (cpu {result['cpu_seconds']:.2f} s), "
                          f"{result['peak_rss_mb']:.0f} MB", flush=True)
                if measured:
                    runs[op].append(result)
            if when:
                checks[when] = check_results(repo, outdir, args.sample, args.seed)
                stop_on(checks[when], when)
            if not args.online:
                continue
            for op in ONLINE_OPERATIONS:
                if op != "online_incremental":
                    server.flush()  # every run but the incremental one writes every key
                before = server.used_memory()
                result = run_child(op, repo, None, server)
                result["keys"] = int(server.client.dbsize())
                result["used_memory_delta"] = server.used_memory() - before
                if log:
                    print(f"  {kind} {op}: {result['seconds']:.3f} s (cpu {result['cpu_seconds']:.2f} s, server "
                          f"{result['server_cpu_s']:.2f} s), {result['rows']:,} entities, "
                          f"{result['peak_rss_mb']:.0f} MB", flush=True)
                if measured:
                    online_runs[op].append(result)
                if op == "online_full" and value_size is None:
                    value_size = max(1, round(result["value_bytes"] / max(1, result["rows"])))
                if when and op == "online_full":
                    online_checks[f"{when}, after the full run"] = check_online(
                        repo, END, [(START, END)], args.sample, args.seed, scale.users)
                    stop_on(online_checks[f"{when}, after the full run"], f"{when}, online at E")
                if when and op == "online_incremental":
                    online_checks[f"{when}, after the incremental run"] = check_online(
                        repo, NEXT_END, [(START, END), (END, NEXT_END)], args.sample, args.seed, scale.users)
                    stop_on(online_checks[f"{when}, after the incremental run"], f"{when}, online at E + 1 day")
                    if i == rounds - 1:
                        latency = online_latency(repo, scale.users, args.seed)
            if has_floor and measured:
                from online import run_floor

                assert value_size is not None
                floor = run_floor("set", server, online_runs["online_full"][-1]["rows"], value_size, "-")
                floors.append(floor)
                if log:
                    print(f"  {kind} floor SET: {floor['rps']:,.0f} req/s", flush=True)
        if "last round" not in checks:
            checks["last round"] = checks["first round"]
        server_info = None if server is None else {
            "name": server.info.get("server_name", "redis"),
            "version": server.info.get("valkey_version") or server.info.get("redis_version")}
    finally:
        if server is not None:
            server.stop()

    results = {op: summarise(r) for op, r in runs.items()}
    comparison = add_ratios(results, scale.entity_rows)
    report: dict[str, Any] = {
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
    if args.online:
        online = summarise_online(online_runs, floors, results["baseline"]["peak_rss_mb"], facts)
        online.update({"facts": facts, "checks": online_checks, "latency": latency, "floor_value_size": value_size,
                       "windows": {op: [w.isoformat() for w in ONLINE_WINDOWS[op][1:]] for op in ONLINE_WINDOWS},
                       "precomputed_sql": precomputed_sql(Path("<events>"))})
        online["tile_line"] = tile_line(online, facts)
        report["online"] = online
        report["online_server"] = server_info
    return report


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops the server


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
    parser.add_argument("--online", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure online materialization of the view into an embedded Valkey server, "
                             "with its baselines and checks (default: on; --no-online skips it)")
    parser.add_argument("--quiet", action="store_true", help="print only the final table")
    parser.add_argument("--worker", choices=[*OPERATIONS, *ONLINE_OPERATIONS], help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # a child process: measure one operation on --repo
        worker_main(args.worker, args.repo, args.out)
        return
    if args.repeat < 1 or args.warmup < 0 or args.sample < 1:
        parser.error("--repeat and --sample must be at least 1, --warmup at least 0")

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    report = run_benchmark(args)
    print()
    print(format_table(report))
    if "online" in report:
        print(format_online(report))
    out = args.json or RESULTS / f"aggregations_{args.scale}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    checks = [*report["checks"].values(), *report.get("online", {}).get("checks", {}).values()]
    if not all(c["equal"] for c in checks):
        print("results differ: the comparison is not valid (see the check lines above)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
