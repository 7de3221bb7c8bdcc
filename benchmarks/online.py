"""Benchmark of the online store: materialization into Redis (Valkey) and ``get_online_features``.

What it does, for one scale:

1. Builds a throwaway copy of the example repo (``feature_repo/``: one entity, three feature views,
   19 features) under ``--workdir``, generates its data with ``feature_repo/generate_data.py``
   (cached per size, seed and generator hash, like ``training_set.py``), starts an embedded Valkey
   server of its own (``featurestore.online.embedded``) and points the repo's ``featurestore.yaml``
   at it with ``online_store: {url: ...}``. The definitions are applied once.
2. Measures, on that one server and in the same run:

   * ``encoding``: for a sample of up to 100k rows of each view, the project's value codec
     (``ValueCodec.encode``, vectorised) against JSON of a per-row dict, pickle of per-row tuples
     and msgpack (only if already installed): bytes per value and encode seconds per 100k rows.
     The mean codec value size is the value size of the floor below;
   * ``floor``: ``redis-benchmark`` with pipelined ``SET`` (``-P 64 -r N -n N -d SIZE``, N = the
     entity-view rows of a materialization), and the same with ``HSET`` and with ``EVALSHA`` of
     the store's newest-wins script on one key per call, as references;
   * ``materialize``: ``FeatureStore(repo).materialize(2026-01-01, 2026-04-01)`` (the generator's
     data window, every row of it) in a fresh child process per run, after ``FLUSHALL`` so that
     every run writes every key: wall time, the write phase alone (from the ``progress`` callback
     that precedes each view's writes to the end of its writes), rows/s, MB/s, peak memory,
     and the Redis memory per entity;
   * ``materialize again``: after the latency runs, the same window ``--repeat`` times over the
     stored keys (no ``FLUSHALL``), so that every slice goes through the newest-wins script: its
     write phase against the same floor;
   * the same materialization with a quarter of the users and with 4x the rows per user, for
     peak memory against the row count;
   * ``latency``: in-process ``get_online_features`` for 1 and for 100 entities per call, with the
     ``fraud_model_v1`` service (13 features) and with all 19 features: p50 / p99 / mean.

Every floor and materialization figure is a median over ``--repeat`` runs (after ``--warmup``
untimed materializations); floors and materializations alternate, so each ratio compares runs made
seconds apart. Nothing here asserts a timing: it prints figures and ratios and writes them to JSON.
The server is stopped at the end, also on errors and Ctrl-C.

Run it from the repo root with the project's virtualenv::

    .venv/bin/python benchmarks/online.py --scale XS            # smoke run, about a minute
    .venv/bin/python benchmarks/online.py --scale S             # 100k users, 300k entity-view rows
    .venv/bin/python benchmarks/online.py --scale M --repeat 3  # 1M users, 3M entity-view rows

Options: ``--rows-per-user R`` (default 2), ``--repeat N``, ``--warmup N``, ``--workdir DIR``
(default ``benchmarks/results/work-online``), ``--json PATH`` (default
``benchmarks/results/online_<scale>.json``), ``--regenerate``, ``--seed N``, ``--profile``,
``--quiet``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import importlib
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training_set import (
    EXAMPLE_REPO,
    REPO_FILES,
    RESULTS,
    WINDOW,
    Scale,
    _children_cpu_seconds,
    _peak_rss_mb,
    _ru_maxrss_mb,
    _Stopwatch,
    _system_busy_seconds,
    data_info,
    machine_info,
    other_load,
    prepare_repo,
    reset_store,
    warm_page_cache,
)

ROWS_PER_USER = 2
SCALES = {"XS": 10_000, "S": 100_000, "M": 1_000_000}  # users
VIEWS = ("user_profile", "user_transactions", "user_web_sessions")
SERVICE = "fraud_model_v1"
# What every child imports before it times anything; the baseline child imports only these.
STACK = ("duckdb", "numpy", "pyarrow", "pyarrow.compute", "pyarrow.parquet", "redis", "featurestore",
         "featurestore.materialize", "featurestore.online.redis", "featurestore.online.retrieval",
         "featurestore.offline.store")
ENCODE_SAMPLE = 100_000
PIPELINE = 64  # redis-benchmark -P
# The figures the issue compares against (Feast 0.67 on this class of machine) and its targets.
FEAST_ROWS_PER_S = 9_000
FEAST_PEAK_MB = 1.2 * 1024
FEAST_LATENCY_MS = {1: (0.79, 1.44), 100: (21.0, 138.0)}  # entities per call: (p50, p99)
TARGET_X_FEAST = 20
TARGET_X_FLOOR = 2.0
# get_online_features cases: (label, features, entities per call, warm-up calls, timed calls).
LATENCY_CASES = (
    ("1 entity, fraud_model_v1", "service", 1, 200, 2000),
    ("1 entity, 19 features", "all", 1, 200, 2000),
    ("100 entities, fraud_model_v1", "service", 100, 20, 300),
    ("100 entities, 19 features", "all", 100, 20, 300),
)
FLOORS = {
    "set": "SET -P 64 (redis-benchmark)",
    "setex": "SET EX -P 64 (as ttl'd views)",
    "hset": "HSET -P 64, 1 field/key",
    "evalsha": "EVALSHA newest-wins, 1 key/call",
}
TTL_SECONDS = 7 * 86_400  # the ttl of two of the three views: their keys are written with EX
OPERATIONS = ("baseline", "encoding", "materialize", "latency", "profile")


# -- the child process -----------------------------------------------------------------------------


def _import_stack() -> None:
    for module in STACK:
        importlib.import_module(module)


def _instrument(store: Any) -> tuple[dict[str, dict[str, Any]], Any]:
    """Record, per view, when its writes start and end and where the write phase spends its time.

    Wraps three seams without changing what runs: the ``progress`` callback marks the start of a
    view's writes (it is called right before them), a wrapper around the store's ``write`` marks
    their end and counts the bytes of keys and values, and a wrapper around the DuckDB batch reader
    given to ``materialize.encode_batches`` times the fetching of batches, so that
    ``write = fetch + encode + send`` (send: framing, socket and waiting for the server).
    The added cost is a few clock reads per 50k-row batch. Returns the records and the callback.
    """
    import featurestore.materialize as mat

    views: dict[str, dict[str, Any]] = {}
    state: dict[str, Any] = {}

    def progress(view: str, rows: int) -> Any:
        views[view] = {"rows": rows, "write_start": time.perf_counter(), "fetch_s": 0.0, "produce_s": 0.0,
                       "key_bytes": 0, "value_bytes": 0, "batches": 0}
        state["view"] = view
        return None

    original_encode = mat.encode_batches

    def encode_batches(project: str, view: Any, batches: Any) -> Any:
        record = views[state["view"]]

        def timed() -> Any:
            it = iter(batches)
            while True:
                began = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    record["fetch_s"] += time.perf_counter() - began
                    return
                record["fetch_s"] += time.perf_counter() - began
                yield batch

        return original_encode(project, view, timed())

    mat.encode_batches = encode_batches
    online = store.online_store
    original_write = online.write

    def write(batches: Any, ttl_seconds: Any, progress: Any = None, **options: Any) -> int:
        record = views[state["view"]]

        def counted() -> Any:
            it = iter(batches)
            while True:
                began = time.perf_counter()
                try:
                    keys, values = next(it)
                except StopIteration:
                    record["produce_s"] += time.perf_counter() - began
                    return
                record["produce_s"] += time.perf_counter() - began
                record["key_bytes"] += _binary_bytes(keys)
                record["value_bytes"] += _binary_bytes(values)
                record["batches"] += 1
                yield keys, values

        written = original_write(counted(), ttl_seconds, progress, **options)
        record["write_end"] = time.perf_counter()
        return int(written)

    online.write = write
    return views, progress


def _binary_bytes(arr: Any) -> int:
    """Bytes of data in a binary Arrow array (from its offsets: no pass over the data)."""
    import numpy as np
    import pyarrow as pa

    if not len(arr):
        return 0
    large = pa.types.is_large_binary(arr.type) or pa.types.is_large_string(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32)
    return int(offsets[arr.offset + len(arr)] - offsets[arr.offset])


def write_phases(v: dict[str, Any], since: float) -> dict[str, Any]:
    """A view's materialization split into select (since ``since``), fetch, encode and send."""
    write_s = v["write_end"] - v["write_start"]
    return {
        # From ``since`` (the previous view's end, or the call) to the first write: registry and DuckDB.
        "select_s": v["write_start"] - since,
        "write_s": write_s,
        "fetch_s": v["fetch_s"],
        "encode_s": v["produce_s"] - v["fetch_s"],
        "send_s": write_s - v["produce_s"],
        "key_bytes": v["key_bytes"],
        "value_bytes": v["value_bytes"],
    }


def _materialize(repo: Path) -> dict[str, Any]:
    from featurestore import FeatureStore

    store = FeatureStore(repo)
    views, progress = _instrument(store)
    watch = _Stopwatch()
    runs = store.materialize(*WINDOW, progress=progress)
    timing = watch.read()
    began = watch.wall
    per_view = {}
    previous_end = began
    for run in runs:
        v = views[run.view]
        per_view[run.view] = {
            "rows": run.rows,
            "written": run.written,
            "seconds": run.seconds,
            **write_phases(v, previous_end),
            "batches": v["batches"],
        }
        previous_end = v["write_end"]
    store.close()
    return {
        **timing,
        "peak_rss_mb": _peak_rss_mb(),
        "rows": sum(r.rows for r in runs),
        "written": sum(r.written for r in runs),
        "write_s": sum(v["write_s"] for v in per_view.values()),
        "bytes": sum(v["key_bytes"] + v["value_bytes"] for v in per_view.values()),
        "views": per_view,
    }


def _profile(repo: Path, out: Path) -> dict[str, Any]:
    """One materialization under cProfile; the stats go to ``out``, the top functions to the result."""
    import cProfile
    import pstats

    from featurestore import FeatureStore

    store = FeatureStore(repo)
    profiler = cProfile.Profile()
    watch = _Stopwatch()
    profiler.enable()
    runs = store.materialize(*WINDOW)
    profiler.disable()
    timing = watch.read()
    store.close()
    profiler.dump_stats(out)
    stats = pstats.Stats(profiler)
    top = []
    entries = stats.stats  # type: ignore[attr-defined]
    for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in sorted(
        entries.items(), key=lambda item: -item[1][2]
    )[:25]:
        top.append({"function": f"{Path(file).name}:{line}({func})", "calls": calls, "tottime_s": tottime,
                    "cumtime_s": cumtime})
    return {**timing, "peak_rss_mb": _peak_rss_mb(), "rows": sum(r.rows for r in runs), "pstats": str(out),
            "top_tottime": top}


def _latency(repo: Path, seed: int) -> dict[str, Any]:
    import numpy as np

    from featurestore import FeatureStore

    users = json.loads((repo / "data" / "generated.json").read_text())["users"]
    store = FeatureStore(repo)
    all_refs = [f"{v.name}:{f}" for v in store.list_feature_views() for f in v.feature_names]
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"features_all": len(all_refs)}
    for label, which, per_call, warmup, calls in LATENCY_CASES:
        features: Any = SERVICE if which == "service" else all_refs
        ids = rng.integers(0, users, (warmup + calls) * per_call).tolist()
        requests = [[{"user_id": u} for u in ids[i * per_call:(i + 1) * per_call]] for i in range(warmup + calls)]
        times = []
        response = None
        for i, rows in enumerate(requests):
            began = time.perf_counter_ns()
            response = store.get_online_features(features, rows)
            elapsed = time.perf_counter_ns() - began
            if i >= warmup:
                times.append(elapsed / 1e6)
        assert response is not None
        statuses: dict[str, int] = {}
        for column in response.statuses.values():
            for status in column:
                statuses[status.value] = statuses.get(status.value, 0) + 1
        times.sort()
        out[label] = {
            "entities": per_call,
            "features": len(response.values),
            "calls": calls,
            "warmup_calls": warmup,
            "p50_ms": _percentile(times, 50),
            "p99_ms": _percentile(times, 99),
            "mean_ms": statistics.fmean(times),
            "max_ms": times[-1],
            "statuses_last_call": statuses,
        }
    store.close()
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, min(len(sorted_values), int(-(-pct * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def _timed(fn: Any, runs: int) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``runs`` calls, and its last result."""
    seconds = []
    result = None
    for _ in range(runs):
        began = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), result


def _encoding(repo: Path) -> dict[str, Any]:
    """Bytes per value and encode time of the codec against JSON, pickle (and msgpack if installed)."""
    import json as json_module
    import pickle

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from featurestore import FeatureStore
    from featurestore.online.codec import ValueCodec

    try:
        import msgpack  # type: ignore[import-not-found]
    except ImportError:
        msgpack = None
    store = FeatureStore(repo)
    out: dict[str, Any] = {"msgpack": getattr(msgpack, "version", None) and ".".join(map(str, msgpack.version))}
    for view in store.list_feature_views():
        table = pq.read_table(repo / "data" / "sources" / f"{view.name}.parquet").slice(0, ENCODE_SAMPLE)
        n = table.num_rows
        names = list(view.feature_names)
        features = table.select(names)
        event, created = table["event_timestamp"], table["created"]
        codec = ValueCodec(view)
        codec_s, values = _timed(lambda: codec.encode(features, event, created), 5)  # noqa: B023
        scale = ENCODE_SAMPLE / n  # seconds per 100k rows

        def to_rows() -> list[tuple[Any, ...]]:
            columns = [c.to_pylist() for c in features.columns]  # noqa: B023
            stamps = [pc.cast(c, pa.int64()).to_pylist() for c in (event, created)]  # noqa: B023
            return list(zip(*stamps, *columns, strict=True))

        rows_s, rows = _timed(to_rows, 3)
        keys = ["event_ts", "created_ts", *names]
        formats: dict[str, Any] = {
            "codec": {"bytes": int(pc.sum(pc.binary_length(values)).as_py()), "encode_s": codec_s * scale,
                      "to_python_s": 0.0},
        }
        encoders: dict[str, Any] = {
            "json": lambda r: json_module.dumps(dict(zip(keys, r, strict=True))).encode(),  # noqa: B023
            "json (compact)": lambda r: json_module.dumps(
                dict(zip(keys, r, strict=True)), separators=(",", ":")).encode(),  # noqa: B023
            "pickle": lambda r: pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL),
        }
        if msgpack is not None:
            encoders["msgpack"] = lambda r: msgpack.packb(r)
        for name, encode in encoders.items():
            seconds, encoded = _timed(lambda enc=encode: [enc(r) for r in rows], 3)  # noqa: B023
            formats[name] = {"bytes": sum(len(e) for e in encoded), "encode_s": seconds * scale,
                             "to_python_s": rows_s * scale}
        for f in formats.values():
            f["bytes_per_value"] = f["bytes"] / n
            f["x_codec_bytes"] = f["bytes"] / formats["codec"]["bytes"]
        out[view.name] = {"rows": n, "formats": formats}
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _run_operation(op: str, repo: Path, seed: int, extra: str | None) -> dict[str, Any]:
    _import_stack()
    if op == "baseline":
        return {"seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": _peak_rss_mb()}
    if op == "materialize":
        return _materialize(repo)
    if op == "latency":
        return _latency(repo, seed)
    if op == "encoding":
        return _encoding(repo)
    if op == "profile":
        assert extra is not None
        return _profile(repo, Path(extra))
    raise ValueError(f"unknown operation {op!r}")


def worker_main(op: str, repo: Path, seed: int, extra: str | None) -> None:
    """Entry point of a child: print one JSON line with the operation's figures."""
    result = _run_operation(op, repo, seed, extra)
    result["ru_maxrss_mb"] = _ru_maxrss_mb()  # for reference only: includes the parent's peak
    print(json.dumps(result), flush=True)


# -- the parent: the server, the floor, the runs -----------------------------------------------------


class Server:
    """The benchmark's own embedded Valkey server and a client for FLUSHALL, INFO and CONFIG."""

    def __init__(self, path: Path) -> None:
        import redis

        from featurestore.online import embedded

        self._embedded = embedded
        self.handle = embedded.acquire(path)
        if not self.handle.owner:
            embedded.release(self.handle)
            raise SystemExit(f"another process runs the server in {path}: is another benchmark using this workdir?")
        self.client = redis.Redis(**self.handle.connection_kwargs(), socket_timeout=600)
        # No background snapshots while measuring: a BGSAVE forks the server and competes for the CPUs.
        self.client.config_set("save", "")
        self.info = self.client.info("server")

    @property
    def url(self) -> str:
        return self.handle.url

    @property
    def password(self) -> str:
        return self.handle.password

    def flush(self) -> None:
        """FLUSHALL SYNC: Valkey frees a flushed keyspace in the background by default
        (lazyfree-lazy-user-flush), which would skew the next run and its used_memory."""
        self.client.execute_command("FLUSHALL", "SYNC")
        deadline = time.monotonic() + 60
        while int(self.client.info("memory").get("lazyfree_pending_objects", 0)) and time.monotonic() < deadline:
            time.sleep(0.05)

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def cpu_seconds(self) -> float:
        cpu = self.client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def reset_stats(self) -> None:
        self.client.config_resetstat()

    def command_stats(self) -> dict[str, dict[str, float]]:
        return {k.removeprefix("cmdstat_"): v for k, v in self.client.info("commandstats").items()}

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.flush()  # nothing to save at shutdown
        self.client.close()
        self._embedded.release(self.handle)


def run_child(op: str, repo: Path, seed: int, server: Server, extra: str | None = None) -> dict[str, Any]:
    """Run one operation in a fresh interpreter (this script in worker mode), as training_set does.

    ``other_cpu_s`` is the CPU time the rest of the machine used meanwhile, not counting the child
    and the benchmark's own server (whose CPU time is ``server_cpu_s``).
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", op, "--repo", str(repo), "--seed", str(seed)]
    if extra is not None:
        cmd += ["--extra", extra]
    busy, children, server_cpu = _system_busy_seconds(), _children_cpu_seconds(), server.cpu_seconds()
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    child_wall = time.perf_counter() - began
    busy_after, children_after, server_after = _system_busy_seconds(), _children_cpu_seconds(), server.cpu_seconds()
    if proc.returncode != 0:
        raise RuntimeError(f"worker {op!r} failed with exit code {proc.returncode}:\n"
                           + proc.stderr.replace(server.password, "***"))
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["child_wall_s"] = child_wall
    result["server_cpu_s"] = server_after - server_cpu
    if busy is not None and busy_after is not None:
        result["other_cpu_s"] = max(0.0, (busy_after - busy) - (children_after - children) - result["server_cpu_s"])
    return result


def run_floor(kind: str, server: Server, n: int, size: int, sha: str) -> dict[str, Any]:
    """One redis-benchmark run of ``n`` pipelined writes with values of ``size`` bytes on random keys."""
    value = "x" * size
    command = {
        "set": ["-t", "set", "-d", str(size)],
        "setex": ["set", "key:__rand_int__", value, "ex", str(TTL_SECONDS)],
        "hset": ["hset", "key:__rand_int__", "v", value],
        "evalsha": ["evalsha", sha, "1", "key:__rand_int__", "0", "0", "1", value],  # ttl 0, no MSETEX
    }[kind]
    binary = redis_benchmark_binary()
    assert binary is not None, "main() checks for redis-benchmark first"
    head = [binary, "-h", server.handle.host, "-p", str(server.handle.port)]
    tail = ["-n", str(n), "-r", str(n), "-P", str(PIPELINE), "--csv", *command]
    server.flush()
    server.reset_stats()
    before_mem, before_cpu = server.used_memory(), server.cpu_seconds()
    busy, children = _system_busy_seconds(), _children_cpu_seconds()
    began = time.perf_counter()
    proc = subprocess.run([*head, "-a", server.password, *tail], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    busy_after, children_after = _system_busy_seconds(), _children_cpu_seconds()
    server_cpu = server.cpu_seconds() - before_cpu
    shown = " ".join([Path(binary).name, *head[1:], "-a", "***", *tail]).replace(value, f"<{size} bytes>")
    if proc.returncode != 0:
        raise RuntimeError(f"{shown} failed ({proc.returncode}): {proc.stderr.replace(server.password, '***')}")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    if not rows:
        raise RuntimeError(f"{shown}: no CSV output: {proc.stdout[-500:]!r}")
    keys = int(server.client.dbsize())
    stats = server.command_stats().get("set" if kind == "setex" else kind, {})
    result = {
        "command": shown,
        "rps": float(rows[-1]["rps"]),
        "p50_latency_ms": float(rows[-1]["p50_latency_ms"]),
        "wall_s": wall,
        "server_cpu_s": server_cpu,
        "server_usec_per_call": float(stats.get("usec_per_call", 0.0)),
        "keys": keys,
        "used_memory_delta": server.used_memory() - before_mem,
    }
    if busy is not None and busy_after is not None:
        result["other_cpu_s"] = max(0.0, (busy_after - busy) - (children_after - children) - server_cpu)
    return result


def materialize_once(repo: Path, seed: int, server: Server, *, flush: bool = True) -> dict[str, Any]:
    """FLUSHALL (unless ``flush`` is false: every key then is stored already), then one
    materialization in a fresh child, with the server's view of it."""
    if flush:
        server.flush()
    server.reset_stats()
    before = server.used_memory()
    result = run_child("materialize", repo, seed, server)
    result["used_memory_delta"] = server.used_memory() - before
    result["keys"] = int(server.client.dbsize())
    stats = server.command_stats()
    # Calls from the client and from inside the script alike (the script writes with MSETEX too).
    result["calls"] = {name: int(stats.get(name, {}).get("calls", 0)) for name in ("evalsha", "msetex", "msetnx")}
    return result


def set_online_url(repo: Path, url: str) -> None:
    """Point the repo copy at the benchmark's server (the file then holds its password: owner-only)."""
    config = repo / "featurestore.yaml"
    text = (EXAMPLE_REPO / "featurestore.yaml").read_text().rstrip("\n")
    config.write_text(f"{text}\n\n# Written by benchmarks/online.py: its own server, for this run only.\n"
                      f"online_store:\n  url: \"{url}\"\n")
    config.chmod(0o600)


def summarise_latency(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per case: the median over the runs of each run's p50, p99 and mean; the max of the maxima."""
    out: dict[str, Any] = {"runs": runs, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
    for label, *_ in LATENCY_CASES:
        cases = [r[label] for r in runs]
        out[label] = {
            **{key: cases[0][key] for key in ("entities", "features", "calls", "warmup_calls")},
            **{key: _median([c[key] for c in cases]) for key in ("p50_ms", "p99_ms", "mean_ms")},
            "max_ms": max(c["max_ms"] for c in cases),
            "p99_ms_runs": [c["p99_ms"] for c in cases],
            "statuses_last_call": cases[-1]["statuses_last_call"],
        }
    return out


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(report: dict[str, Any]) -> None:
    """Medians and ratios (ratios per repeat, floors and materializations run seconds apart)."""
    mats = report["materialize"]["runs"]
    floors = report["floor"]
    rows = mats[0]["rows"]
    summary: dict[str, Any] = {
        "rows": rows,
        "median_s": _median([r["seconds"] for r in mats]),
        "min_s": min(r["seconds"] for r in mats),
        "max_s": max(r["seconds"] for r in mats),
        "median_write_s": _median([r["write_s"] for r in mats]),
        "median_cpu_s": _median([r["cpu_seconds"] for r in mats]),
        "median_server_cpu_s": _median([r["server_cpu_s"] for r in mats]),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in mats),
        "bytes": mats[0]["bytes"],
    }
    summary["rows_per_s"] = rows / summary["median_s"]
    summary["write_rows_per_s"] = rows / summary["median_write_s"]
    summary["mb_per_s"] = summary["bytes"] / 1e6 / summary["median_s"]
    summary["write_mb_per_s"] = summary["bytes"] / 1e6 / summary["median_write_s"]
    summary["x_feast"] = summary["rows_per_s"] / FEAST_ROWS_PER_S
    summary["write_x_feast"] = summary["write_rows_per_s"] / FEAST_ROWS_PER_S
    summary["peak_over_baseline_mb"] = summary["peak_rss_mb"] - report["baseline"]["peak_rss_mb"]
    summary["all_keys_written"] = all(r["written"] == r["rows"] == r["keys"] for r in mats)
    summary["server_usec_per_key"] = _median([r["server_cpu_s"] * 1e6 / r["rows"] for r in mats])
    summary["calls"] = mats[-1]["calls"]
    for floor in floors.values():
        floor["median_rps"] = _median([f["rps"] for f in floor["runs"]])
        floor["median_server_usec_per_call"] = _median([f["server_usec_per_call"] for f in floor["runs"]])
        floor["memory_per_key"] = floor["runs"][-1]["used_memory_delta"] / max(1, floor["runs"][-1]["keys"])
        # Ratios per repeat: run i of the floor against materialization i (run seconds after it).
        pairs = list(zip(floor["runs"], mats, strict=True))
        floor["x_write"] = _median([f["rps"] / (m["rows"] / m["write_s"]) for f, m in pairs])
        floor["x_end_to_end"] = _median([f["rps"] / (m["rows"] / m["seconds"]) for f, m in pairs])
    views: dict[str, Any] = {}
    for name in mats[0]["views"]:
        per = [m["views"][name] for m in mats]
        v = {key: _median([p[key] for p in per]) for key in ("select_s", "write_s", "fetch_s", "encode_s", "send_s",
                                                              "seconds")}
        v["rows"] = per[0]["rows"]
        v["write_rows_per_s"] = v["rows"] / v["write_s"] if v["write_s"] else None
        v["key_bytes_mean"] = per[0]["key_bytes"] / max(1, v["rows"])
        v["value_bytes_mean"] = per[0]["value_bytes"] / max(1, v["rows"])
        views[name] = v
    summary["views"] = views
    last = mats[-1]
    users = report["scale"]["users"]
    report["redis_memory"] = {
        "used_memory_delta": last["used_memory_delta"],
        "keys": last["keys"],
        "per_entity": last["used_memory_delta"] / users,
        "per_key": last["used_memory_delta"] / max(1, last["keys"]),
        "payload_per_key": last["bytes"] / max(1, last["keys"]),
    }
    rewrites = report["materialize"].get("over_stored_keys") or []
    if rewrites:
        summary["over_stored_keys"] = {
            "write_rows_per_s": _median([r["rows"] / r["write_s"] for r in rewrites]),
            "server_usec_per_key": _median([r["server_cpu_s"] * 1e6 / r["rows"] for r in rewrites]),
            "x_write": floors["set"]["median_rps"] / _median([r["rows"] / r["write_s"] for r in rewrites]),
            "calls": rewrites[-1]["calls"],
        }
    report["materialize"]["summary"] = summary


# -- the report ------------------------------------------------------------------------------------


def format_report(report: dict[str, Any]) -> str:
    scale = report["scale"]
    m = report["machine"]
    mat = report["materialize"]["summary"]
    floors = report["floor"]
    lines = [
        f"online benchmark, scale {scale['name']}: {scale['users']:,} users x {scale['rows_per_user']} rows/user "
        f"(profile: {max(1, scale['rows_per_user'] // 4)}), 3 views, {report['features']} features, "
        f"{mat['rows']:,} entity-view rows per materialization, repeat {report['repeat']}",
        f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {m['mem_total_gb']} GB, Python {m['python']}, "
        f"duckdb {m['duckdb']}, pyarrow {m['pyarrow']}, redis-py {m['redis_py']}, commit {m['git_commit']} "
        f"(featurestore/ sha256 {m['featurestore_source_sha256']})",
        f"server: {report['server']['name']} {report['server']['version']} on 127.0.0.1 (embedded, this run's own; "
        f"background saves off); floor value size {report['value_size']} B (mean codec value of the data)",
        "",
    ]

    header = f"{'writes':<36}{'median/s':>12}{'MB/s':>8}{'x floor':>9}{'srv us/key':>12}  notes"
    lines += [header, "-" * len(header)]
    for kind, label in FLOORS.items():
        f = floors[kind]
        mbps = f["median_rps"] * (16 + report["value_size"]) / 1e6
        note = "  the floor" if kind == "set" else ""
        x_set = floors["set"]["median_rps"] / f["median_rps"]
        lines.append(f"{label:<36}{f['median_rps']:>12,.0f}{mbps:>8.1f}{x_set:>9.2f}"
                     f"{f['median_server_usec_per_call']:>12.2f}{note}")
    set_floor = floors["set"]
    lines.append(f"{'materialize: write phase':<36}{mat['write_rows_per_s']:>12,.0f}{mat['write_mb_per_s']:>8.1f}"
                 f"{set_floor['x_write']:>9.2f}{mat['server_usec_per_key']:>12.2f}  "
                 + ", ".join(f"{n:,} {name.upper()}" for name, n in mat["calls"].items() if n)
                 + " (500 keys each)")
    again = mat.get("over_stored_keys")
    if again:
        lines.append(f"{'materialize again, keys stored':<36}{again['write_rows_per_s']:>12,.0f}{'':>8}"
                     f"{again['x_write']:>9.2f}{again['server_usec_per_key']:>12.2f}  write phase; "
                     + ", ".join(f"{n:,} {name.upper()}" for name, n in again["calls"].items() if n))
    lines.append(f"{'materialize: end to end':<36}{mat['rows_per_s']:>12,.0f}{mat['mb_per_s']:>8.1f}"
                 f"{set_floor['x_end_to_end']:>9.2f}{'-':>12}")
    lines.append("  x floor: the SET floor's req/s divided by the line's rate (materialize: the median of per-repeat "
                 f"ratios; target <= {TARGET_X_FLOOR:g}); MB/s: keys + values (redis-benchmark: 16-byte keys); "
                 "srv us/key: server time per command from INFO commandstats (materialize: the server's CPU time "
                 "per key, parsing included)")
    lines.append(f"  vs Feast 0.67 ({FEAST_ROWS_PER_S:,} rows/s): end to end x{mat['x_feast']:.1f}, write phase "
                 f"x{mat['write_x_feast']:.1f} (target x{TARGET_X_FEAST}). The other floors' rates over the write "
                 f"phase's: HSET {floors['hset']['x_write']:.2f}, SET EX (the same expiry as the ttl'd views) "
                 f"{floors['setex']['x_write']:.2f}, EVALSHA newest-wins one key/call "
                 f"{floors['evalsha']['median_rps'] / mat['write_rows_per_s']:.2f}")
    lines.append("")

    lines.append(f"materialize {mat['rows']:,} rows: median {mat['median_s']:.2f} s (min {mat['min_s']:.2f}, "
                 f"max {mat['max_s']:.2f}), write phase {mat['median_write_s']:.2f} s, "
                 f"cpu {mat['median_cpu_s']:.2f} s, "
                 f"server cpu {mat['median_server_cpu_s']:.2f} s; peak {mat['peak_rss_mb']:.0f} MB "
                 f"(+{mat['peak_over_baseline_mb']:.0f} over the imports-only child; Feast: {FEAST_PEAK_MB:.0f} MB); "
                 f"every key written every run: {'yes' if mat['all_keys_written'] else 'NO'}")
    header = (f"{'view':<20}{'rows':>11}{'select s':>10}{'write s':>9}{'fetch s':>9}{'encode s':>10}{'send s':>9}"
              f"{'write rows/s':>14}{'key B':>7}{'value B':>9}")
    lines += [header, "-" * len(header)]
    for name, v in mat["views"].items():
        rate = f"{v['write_rows_per_s']:,.0f}" if v["write_rows_per_s"] else "-"
        lines.append(f"{name:<20}{v['rows']:>11,}{v['select_s']:>10.2f}{v['write_s']:>9.2f}{v['fetch_s']:>9.2f}"
                     f"{v['encode_s']:>10.2f}{v['send_s']:>9.2f}{rate:>14}{v['key_bytes_mean']:>7.1f}"
                     f"{v['value_bytes_mean']:>9.1f}")
    lines.append("  select: registry and DuckDB's latest row per entity; write = fetch (DuckDB batches) + encode "
                 "(keys and values) + send (framing, socket, waiting for the server); medians")
    mem = report["redis_memory"]
    floor_mem = floors["set"]["memory_per_key"]
    lines.append(f"Redis memory: {mem['used_memory_delta'] / 2**20:,.1f} MiB for {mem['keys']:,} keys: "
                 f"{mem['per_entity']:.0f} B per entity (3 views), {mem['per_key']:.0f} B per key "
                 f"({mem['payload_per_key']:.0f} B of key + value; redis-benchmark SET keys: "
                 f"{floor_mem:.0f} B per key)")
    lines.append("")

    flat = report["memory_flat"]
    header = f"{'memory vs row count':<28}{'users':>11}{'source rows':>13}{'written':>11}{'s':>8}{'rows/s':>11}" \
             f"{'peak MB':>9}{'+base MB':>10}"
    lines += [header, "-" * len(header)]
    for label, r in flat.items():
        lines.append(f"{label:<28}{r['users']:>11,}{r['source_rows']:>13,}{r['rows']:>11,}{r['seconds']:>8.2f}"
                     f"{r['rows'] / r['seconds']:>11,.0f}{r['peak_rss_mb']:>9.0f}"
                     f"{r['peak_rss_mb'] - report['baseline']['peak_rss_mb']:>10.0f}")
    lines.append(f"  imports-only child: {report['baseline']['peak_rss_mb']:.0f} MB; one run each except the "
                 "first line (max of the measured runs)")
    lines.append("")

    lat = report["latency"]
    title = f"get_online_features (median of {len(lat['runs'])})"
    header = f"{title:<32}{'feats':>6}{'calls':>7}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}" \
             f"{'max ms':>9}{'Feast p50/p99':>15}{'x p50':>7}{'x p99':>7}"
    lines += [header, "-" * len(header)]
    for label, *_ in LATENCY_CASES:
        r = lat[label]
        feast = FEAST_LATENCY_MS[r["entities"]]
        lines.append(f"{label:<32}{r['features']:>6}{r['calls']:>7}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}"
                     f"{r['mean_ms']:>9.3f}{r['max_ms']:>9.2f}{f'{feast[0]:g}/{feast[1]:g}':>15}"
                     f"{r['p50_ms'] / feast[0]:>7.2f}{r['p99_ms'] / feast[1]:>7.2f}")
    statuses = lat["100 entities, 19 features"]["statuses_last_call"]
    lines.append(f"  in process, after the warm-up calls; x: ours / Feast 0.67 in process. Statuses of the last "
                 f"100-entity call (19 features): {statuses}. With the data window "
                 f"{WINDOW[0].date()}..{WINDOW[1].date()} and today's date ({report['created_at'][:10]}), the views "
                 "with a 7-day ttl are OUTSIDE_MAX_AGE (values still read and decoded); user_profile has no ttl.")
    lines.append("")

    enc = report["encoding"]
    header = f"{'encoding (per value)':<38}{'rows':>9}{'bytes':>8}{'x codec':>9}{'encode s/100k':>15}" \
             f"{'+to Python s':>14}"
    lines += [header, "-" * len(header)]
    for name in VIEWS:
        e = enc[name]
        for fmt, f in e["formats"].items():
            lines.append(f"{name + ' ' + fmt:<38}{e['rows']:>9,}{f['bytes_per_value']:>8.1f}"
                         f"{f['x_codec_bytes']:>9.2f}{f['encode_s']:>15.3f}{f['to_python_s']:>14.3f}")
    lines.append(f"  codec: ValueCodec.encode from Arrow (vectorised); others: per row, from Python tuples (the Arrow "
                 f"-> Python conversion is '+to Python'); msgpack: {enc['msgpack'] or 'not installed'}")

    if report.get("profile"):
        prof = report["profile"]
        lines += ["", f"cProfile of one materialization ({prof['seconds']:.2f} s under the profiler; "
                  f"{prof['pstats']}), top functions by own time:"]
        for t in prof["top_tottime"][:15]:
            lines.append(f"  {t['tottime_s']:>8.2f} s own {t['cumtime_s']:>8.2f} s cum {t['calls']:>9,}  "
                         f"{t['function']}")

    others = [r["other_cpu_s"] / r["child_wall_s"] for r in report["materialize"]["runs"] if "other_cpu_s" in r]
    others += [f["other_cpu_s"] / f["wall_s"] for fl in floors.values() for f in fl["runs"] if "other_cpu_s" in f]
    if others:
        worst = max(others)
        note = "quiet" if worst < 0.1 else "BUSY: other processes competed for the CPUs, figures are noisy"
        lines += ["", f"machine load: other processes kept up to {worst:.2f} CPUs busy during a measured run "
                  f"(not counting this benchmark's server): {note}"]
    return "\n".join(lines)


# -- the benchmark ---------------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    users = SCALES[args.scale]
    rpu = args.rows_per_user
    workdir = (args.workdir or RESULTS / "work-online").resolve()
    log = not args.quiet
    # The main size, then the two for peak memory against the row count.
    sizes = {
        "main": Scale(args.scale, users, rpu, min(users, 10_000)),
        "quarter": Scale(f"{args.scale}-quarter-users", users // 4, rpu, min(users // 4, 10_000)),
        "rows4x": Scale(f"{args.scale}-rows-x4", users, rpu * 4, min(users, 10_000)),
    }
    repos: dict[str, Path] = {}
    generated: dict[str, float | None] = {}
    for key, size in sizes.items():
        began = time.perf_counter()
        repos[key], made = prepare_repo(size, workdir, args.seed, args.regenerate)
        generated[key] = time.perf_counter() - began if made else None
        if log:
            print(f"repo {key}: {repos[key]} (data {'generated' if made else 'cached'}, "
                  f"{time.perf_counter() - began:.1f} s)", flush=True)
    repo = repos["main"]

    server = Server(workdir / "server")
    try:
        if log:
            print(f"server: {_server_name(server)} on 127.0.0.1:{server.handle.port}", flush=True)
        for r in repos.values():
            set_online_url(r, server.url)
            reset_store(r)  # a fresh registry (no offline snapshots), definitions applied once
            warm_page_cache(r)
        load_start = list(os.getloadavg())
        idle_load = other_load()
        if idle_load is not None and idle_load >= 0.1:
            print(f"warning: before measuring, other processes keep {idle_load:.2f} CPUs busy; "
                  "figures will be noisy", flush=True)

        from featurestore.online.redis import NEWEST_WINS

        sha = str(server.client.script_load(NEWEST_WINS))
        baseline = run_child("baseline", repo, args.seed, server)
        encoding = run_child("encoding", repo, args.seed, server)
        value_size = round(statistics.fmean(encoding[v]["formats"]["codec"]["bytes_per_value"] for v in VIEWS))
        if log:
            print(f"baseline child: {baseline['peak_rss_mb']:.0f} MB; mean codec value: {value_size} B", flush=True)

        n = users * len(VIEWS)
        floors: dict[str, dict[str, Any]] = {kind: {"label": label, "runs": []} for kind, label in FLOORS.items()}
        mats = []
        for i in range(args.warmup + args.repeat):
            measured = i >= args.warmup
            kind_of_run = f"run {i - args.warmup + 1}/{args.repeat}" if measured else "warm-up"
            if measured:
                for kind in FLOORS:
                    f = run_floor(kind, server, n, value_size, sha)
                    floors[kind]["runs"].append(f)
                    if log:
                        print(f"  floor {kind} {kind_of_run}: {f['rps']:,.0f} req/s ({f['wall_s']:.2f} s, "
                              f"server cpu {f['server_cpu_s']:.2f} s)", flush=True)
            result = materialize_once(repo, args.seed, server)
            if log:
                print(f"  materialize {kind_of_run}: {result['seconds']:.2f} s, write phase {result['write_s']:.2f} s "
                      f"({result['rows'] / result['write_s']:,.0f} rows/s), {result['peak_rss_mb']:.0f} MB, "
                      f"server cpu {result['server_cpu_s']:.2f} s", flush=True)
            if measured:
                mats.append(result)

        # Latency reads what the last materialization wrote; each run draws other users.
        latency_runs = []
        for i in range(args.repeat):
            lat = run_child("latency", repo, args.seed + i, server)
            latency_runs.append(lat)
            if log:
                print(f"  latency run {i + 1}/{args.repeat}: " + ", ".join(
                    f"{label} p50 {lat[label]['p50_ms']:.3f} ms" for label, *_ in LATENCY_CASES), flush=True)
        latency = summarise_latency(latency_runs)

        # The same window again over the stored keys: every slice goes through the newest-wins script.
        rewrites = []
        for i in range(args.repeat):
            r = materialize_once(repo, args.seed, server, flush=False)
            rewrites.append(r)
            if log:
                print(f"  materialize over stored keys {i + 1}/{args.repeat}: write phase {r['write_s']:.2f} s "
                      f"({r['rows'] / r['write_s']:,.0f} rows/s), server cpu {r['server_cpu_s']:.2f} s", flush=True)

        flat: dict[str, dict[str, Any]] = {}
        for key, label in (("main", f"{users:,} users x {rpu} rows"),
                           ("quarter", f"{users // 4:,} users x {rpu} rows"),
                           ("rows4x", f"{users:,} users x {rpu * 4} rows")):
            if key == "main":
                r = {"seconds": _median([m["seconds"] for m in mats]), "rows": mats[0]["rows"],
                     "peak_rss_mb": max(m["peak_rss_mb"] for m in mats)}
            else:
                r = materialize_once(repos[key], args.seed, server)
                if log:
                    print(f"  materialize {key}: {r['seconds']:.2f} s, {r['peak_rss_mb']:.0f} MB", flush=True)
            info = data_info(repos[key])
            flat[label] = {**r, "users": sizes[key].users, "rows_per_user": sizes[key].rows_per_user,
                           "source_rows": sum(info[v]["rows"] for v in VIEWS)}

        profile = None
        if args.profile:
            server.flush()
            out = RESULTS / f"online_{args.scale}_materialize.pstats"
            profile = run_child("profile", repo, args.seed, server, extra=str(out))
    finally:
        server.stop()

    report: dict[str, Any] = {
        "benchmark": "online",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "scale": {"name": args.scale, "users": users, "rows_per_user": rpu, "seed": args.seed},
        "repeat": args.repeat,
        "warmup": args.warmup,
        "features": 19,
        "window": [w.isoformat() for w in WINDOW],
        "workdir": str(workdir),
        "data_generated_s": generated,
        "definitions_sha256": hashlib.sha256(
            b"".join((EXAMPLE_REPO / f).read_bytes() for f in REPO_FILES)).hexdigest()[:16],
        "data": {key: data_info(r) for key, r in repos.items()},
        "machine": {**machine_info(), "redis_py": importlib.import_module("redis").__version__,
                    "redis_benchmark": _redis_benchmark_version()},
        "server": {"name": server.info.get("server_name", "redis"),
                   "version": server.info.get("valkey_version") or server.info.get("redis_version"),
                   "redis_version": server.info.get("redis_version"), "background_saves": False},
        "load_average": {"start": load_start, "end": list(os.getloadavg())},
        "other_load_before_start": idle_load,
        "references": {"feast_rows_per_s": FEAST_ROWS_PER_S, "feast_peak_mb": FEAST_PEAK_MB,
                       "feast_latency_ms": {str(k): v for k, v in FEAST_LATENCY_MS.items()},
                       "target_x_feast": TARGET_X_FEAST, "target_x_floor": TARGET_X_FLOOR},
        "value_size": value_size,
        "baseline": baseline,
        "encoding": encoding,
        "floor": floors,
        "materialize": {"runs": mats, "over_stored_keys": rewrites},
        "memory_flat": flat,
        "latency": latency,
        "profile": profile,
    }
    summarise(report)
    return report


def _server_name(server: Server) -> str:
    info = server.info
    return f"{info.get('server_name', 'redis')} {info.get('valkey_version') or info.get('redis_version')}"


def redis_benchmark_binary() -> str | None:
    """redis-benchmark on PATH or where Debian's redis-tools puts it; None when neither has it."""
    found = shutil.which("redis-benchmark")
    if found:
        return found
    return "/usr/bin/redis-benchmark" if Path("/usr/bin/redis-benchmark").is_file() else None


def _redis_benchmark_version() -> str | None:
    binary = redis_benchmark_binary()
    if binary is None:
        return None
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops the server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=list(SCALES), default="S",
                        help="users: XS 10k, S 100k, M 1M (default: S)")
    parser.add_argument("--rows-per-user", type=int, default=ROWS_PER_USER,
                        help=f"source rows per user of the daily views (default: {ROWS_PER_USER})")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs (default: 3)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed materializations before the measured ones (default: 1)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="repo copies, cached data and the server (default: benchmarks/results/work-online)")
    parser.add_argument("--json", type=Path, default=None,
                        help="result file (default: benchmarks/results/online_<scale>.json)")
    parser.add_argument("--regenerate", action="store_true", help="generate the data even if cached")
    parser.add_argument("--seed", type=int, default=7, help="seed of the data generator (default: 7)")
    parser.add_argument("--profile", action="store_true",
                        help="also run one materialization under cProfile (stats in benchmarks/results/)")
    parser.add_argument("--quiet", action="store_true", help="print only the final report")
    parser.add_argument("--worker", choices=OPERATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--extra", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # a child process: one operation on --repo
        worker_main(args.worker, args.repo, args.seed, args.extra)
        return
    if args.repeat < 1 or args.warmup < 0 or args.rows_per_user < 1:
        parser.error("--repeat and --rows-per-user must be at least 1, --warmup at least 0")

    if redis_benchmark_binary() is None:  # the floor needs it: say so now, not after minutes of work
        parser.error("redis-benchmark not found (the floor of this benchmark): install it "
                     "(Debian: apt-get install redis-tools; bash scripts/test.sh installs it when run as root)")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    report = run_benchmark(args)
    print()
    print(format_report(report))
    out = args.json or RESULTS / f"online_{args.scale}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
