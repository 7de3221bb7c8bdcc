"""The benchmark in one command: this project's workload and, with ``--compare feast``, Feast's.

    .venv/bin/python benchmarks/run.py --scale XS --repeat 1                  # smoke run, ours only
    .venv/bin/python benchmarks/run.py --scale S --repeat 3 --compare feast   # 100k users, side by side
    .venv/bin/python benchmarks/run.py --scale M --repeat 3 --compare feast   # 1M users

What it does, for one scale:

1. Generates the example repo's data (``feature_repo/generate_data.py``: users with a profile,
   transaction and web-session view, 19 features, duplicate event timestamps told apart by the
   created timestamp, about 0.5% nulls, entity rows with unknown users and with times before the
   data) into a copy of the repo, cached per scale and seed (``training_set.prepare_repo``).
2. Starts one Redis-compatible server for the whole run (the embedded Valkey, as ``online.py``
   does, background saves off). This project writes to database 0 under its project's key prefix;
   Feast to database 1 under its own project.
3. With ``--compare feast``: creates a virtual environment (default
   ``benchmarks/results/feast-venv``) and installs ``feast[redis,duckdb]==FEAST_VERSION`` into it
   once (reused when the pinned version is there), and writes an equivalent Feast repo generated
   from this project's definitions: the same entity, the same three views (same Parquet files,
   timestamp and created-timestamp columns, schemas and ttls), the same feature service, the DuckDB
   offline store and the Redis online store on the same server.
4. Measures, each operation in a fresh child process (Feast's in its venv, through
   ``benchmarks/feast_worker.py``), ours and Feast's alternating so that load changes hit both:

   * ``import``: ``import featurestore`` / ``import feast`` in a fresh interpreter;
   * ``apply``: applying the definitions to an empty registry;
   * ``training set``: reading the entity rows + ``get_historical_features`` of all 19 features
     from the raw Parquet sources (Feast: ``.to_df()``), wall time and peak memory;
   * ``materialize``: the data window into Redis, from an empty database, rows/s and peak memory;
   * ``online, in process``: ``get_online_features`` for 1 and 100 entities x 19 features;
   * ``online, server``: the same through each system's server on loopback: ``featurestore serve``
     (gRPC, the generated stub) and ``feast serve`` (HTTP ``/get-online-features``, JSON).

   Figures are medians of ``--repeat`` runs (after ``--warmup`` untimed runs for apply and
   training sets), with min and max.
5. Checks in the same run that the two systems agree: the training sets cell by cell after
   sorting by ``row_id`` (floats to 1e-9 relative), and the online values of a sample of users.
   Every difference is classified by looking at the data (ties on event + created timestamp, rows
   on a ttl boundary, nulls) and printed with examples.
6. Prints a table (ours, Feast, ours / Feast) and writes ``run_<scale>.json``,
   ``report_<scale>.md`` and the chart it embeds, ``report_<scale>.svg``, to ``--out``.

Nothing asserts a timing. The servers (Valkey, both feature servers) are stopped at the end, also
on errors, Ctrl-C and SIGTERM; the report lists any process it started that is still alive.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import compare_checks
import compare_report
import online
import serving
import training_set
from online import Server, materialize_once, set_online_url
from serving import FeatureServer, _popen_kwargs, write_config
from training_set import (
    EXAMPLE_REPO,
    REPO_FILES,
    RESULTS,
    WINDOW,
    Scale,
    _children_cpu_seconds,
    _import_stack,
    _peak_rss_mb,
    _Stopwatch,
    _system_busy_seconds,
    machine_info,
    other_load,
    prepare_repo,
    reset_store,
    warm_page_cache,
)

HERE = Path(__file__).resolve().parent
FEAST_WORKER = HERE / "feast_worker.py"
FEAST_VERSION = "0.67.0"
# The DuckDB offline store needs the duckdb extra (ibis); redis is the online store.
FEAST_REQUIREMENT = f"feast[redis,duckdb]=={FEAST_VERSION}"
FEAST_PROJECT = "feast_bench"
FEAST_DB, OURS_DB = 1, 0
FEAST_SERVE_FLAGS = ["--no-access-log", "--workers", "1", "--max-requests", "0"]
ROWS_PER_USER = 10

SCALES = {
    s.name: s
    for s in (
        Scale("XS", 2_000, ROWS_PER_USER, 2_000),
        Scale("S", 100_000, ROWS_PER_USER, 100_000),
        Scale("M", 1_000_000, ROWS_PER_USER, 1_000_000),
    )
}
# Calls per round through the servers: entities per call -> (warm-up, timed).
SERVER_CALLS = {"XS": {1: (50, 300), 100: (10, 50)}, "S": {1: (300, 3000), 100: (50, 500)},
                "M": {1: (300, 3000), 100: (50, 500)}}
# The cases of serving.py's latency worker that this benchmark keeps.
SERVER_CASES = ("health", "stub1", "client1", "stub100", "client100")
ONLINE_SAMPLE = 1_000  # known users whose online values are compared (plus unknown and tied ones)
IMPORT_RUNS_MIN = 5


# -- this project's children (this script in worker mode) ---------------------------------------------


def _w_apply(spec: dict[str, Any]) -> dict[str, Any]:
    from featurestore import FeatureStore

    watch = _Stopwatch()
    store = FeatureStore(spec["repo"])
    store.apply()
    timing = watch.read()
    store.close()
    return {**timing, "peak_rss_mb": _peak_rss_mb()}


def _w_export_training(spec: dict[str, Any]) -> dict[str, Any]:
    import polars as pl

    from featurestore import FeatureStore

    store = FeatureStore(spec["repo"])
    training = store.get_historical_features(pl.read_parquet(spec["entity_file"]), features=spec["refs"])
    training.write_parquet(spec["out"])
    return {"rows": training.height, "columns": training.width, "path": spec["out"]}


def _w_online_sample(spec: dict[str, Any]) -> dict[str, Any]:
    """Online values of the sample users: as stored (whatever their age, as Feast serves them) and
    as served now (statuses, with the views' ttl applied at request time)."""
    from featurestore import FeatureStore
    from featurestore.online.retrieval import OnlineRead

    store = FeatureStore(spec["repo"])
    requests = store.resolve_features(spec["refs"])
    rows = [{"user_id": u} for u in spec["sample_users"]]
    plan = OnlineRead(store.project, requests, rows)
    raw = store.online_store.read(plan.key_groups)
    stored = plan.decode(raw, now_us=0)  # judged at the epoch: no value is too old, i.e. every stored value
    now = plan.decode(raw)
    out = {
        "values": stored.values,
        "statuses_now": {k: [s.value for s in v] for k, v in now.statuses.items()},
    }
    store.close()
    Path(spec["out"]).write_text(json.dumps(out, default=str))
    return {"users": len(rows), "path": spec["out"]}


def _w_grpc_latency(spec: dict[str, Any]) -> dict[str, Any]:
    """serving.py's latency worker, on the cases and call counts of this benchmark."""
    serving.LATENCY_CASES = tuple(c for c in serving.LATENCY_CASES if c[0] in SERVER_CASES)
    serving.LATENCY_CALLS = {int(k): tuple(v) for k, v in spec["calls"].items()}
    cfg = json.loads(Path(spec["config"]).read_text())
    return serving.latency_worker(cfg, {"rounds": spec["rounds"], "seed": spec["seed"]})


WORKERS = {
    "apply": _w_apply,
    "export-training": _w_export_training,
    "online-sample": _w_online_sample,
    "grpc-latency": _w_grpc_latency,
}


def worker_main(op: str, spec_file: Path) -> None:
    spec = json.loads(spec_file.read_text())
    if op != "grpc-latency":
        _import_stack()
    print(json.dumps(WORKERS[op](spec), default=str), flush=True)


# -- running children ------------------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    """Write a file that only its owner can read, from its creation on (it may hold a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)  # an older file keeps its mode through O_CREAT


def _write_spec(workdir: Path, name: str, spec: dict[str, Any]) -> Path:
    """Children get their arguments in a file, owner-readable only (it may hold the Redis password)."""
    path = workdir / "specs" / f"{name}.json"
    _write_private(path, json.dumps(spec, default=str))
    return path


def _pids_cpu(pids: list[int]) -> float:
    return sum(serving.process_cpu(pid) or 0.0 for pid in pids)


def _measured(cmd: list[str], server: Server, *, cwd: Path | None = None, secret: str = "",
              timeout: float | None = None, pids: list[int] | None = None) -> dict[str, Any]:
    """Run a child that prints one JSON line; add its wall time and what else the machine did
    (``other_cpu_s``: CPU time of everything but the child, the Redis server and ``pids``, the
    feature server a load generator talks to)."""
    pids = pids or []
    busy, children, server_cpu = _system_busy_seconds(), _children_cpu_seconds(), server.cpu_seconds()
    pids_cpu = _pids_cpu(pids)
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd, timeout=timeout)
    wall = time.perf_counter() - began
    busy_after, children_after, server_after = _system_busy_seconds(), _children_cpu_seconds(), server.cpu_seconds()
    pids_after = _pids_cpu(pids)
    if proc.returncode != 0:
        tail = proc.stderr[-6000:]
        raise RuntimeError(f"{' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))} failed with exit "
                           f"code {proc.returncode}:\n" + (tail.replace(secret, "***") if secret else tail))
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["child_wall_s"] = wall
    result["server_cpu_s"] = server_after - server_cpu
    if pids:
        result["feature_server_cpu_s"] = pids_after - pids_cpu
    if busy is not None and busy_after is not None:
        result["other_cpu_s"] = max(0.0, (busy_after - busy) - (children_after - children) - result["server_cpu_s"]
                                    - (pids_after - pids_cpu))
    return result


class Run:
    """The state of one benchmark run: paths, the server, Feast's venv, and how to run children."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scale = SCALES[args.scale]
        self.out: Path = args.out.resolve()
        self.workdir: Path = (args.workdir or RESULTS / "work-compare").resolve()
        self.log = not args.quiet
        self.feast = args.compare == "feast"
        self.feast_venv: Path = (args.feast_venv or RESULTS / "feast-venv").resolve()
        self.server: Server | None = None
        self.started: list[int] = []
        self.repo = Path()
        self.feast_repo = Path()
        self.refs: list[str] = []

    def say(self, text: str) -> None:
        if self.log:
            print(text, flush=True)

    @property
    def feast_python(self) -> Path:
        return self.feast_venv / "bin" / "python"

    def ours(self, op: str, spec: dict[str, Any], pids: list[int] | None = None) -> dict[str, Any]:
        assert self.server is not None
        path = _write_spec(self.workdir, f"ours-{op}", spec)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", op, "--spec-file", str(path)]
        return _measured(cmd, self.server, secret=self.server.password, timeout=3600, pids=pids)

    def feast_op(self, op: str, extra: dict[str, Any] | None = None, pids: list[int] | None = None) -> dict[str, Any]:
        assert self.server is not None
        spec = {
            "repo": str(self.feast_repo),
            "entity_file": str(self.repo / "data" / "entity_rows.parquet"),
            "refs": self.refs,
            "window": [w.isoformat() for w in WINDOW],
            "users": self.scale.users,
            "redis": {"host": self.server.handle.host, "port": self.server.handle.port,
                      "password": self.server.password, "db": FEAST_DB},
            **(extra or {}),
        }
        path = _write_spec(self.workdir, f"feast-{op}", spec)
        cmd = [str(self.feast_python), str(FEAST_WORKER), "--op", op, "--spec-file", str(path)]
        return _measured(cmd, self.server, cwd=self.feast_repo, secret=self.server.password, timeout=7200, pids=pids)


# -- Feast: its venv and its repo ----------------------------------------------------------------------


def ensure_feast_venv(venv: Path, log: Any) -> dict[str, Any]:
    """Create the venv and install the pinned Feast once; reuse it when the pinned version is there."""
    python = venv / "bin" / "python"
    marker = venv / "benchmark-install.json"

    def installed_version() -> str | None:
        if not python.exists():
            return None
        proc = subprocess.run([str(python), "-c", "import feast; print(feast.__version__)"], capture_output=True,
                              text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    if marker.is_file() and json.loads(marker.read_text()).get("requirement") == FEAST_REQUIREMENT \
            and installed_version() == FEAST_VERSION:
        info = json.loads(marker.read_text())
        info["reused"] = True
        return info
    began = time.perf_counter()
    if not python.exists():
        log(f"creating {venv} (python -m venv)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log(f"installing {FEAST_REQUIREMENT} into {venv} (pip; output in {venv / 'pip-install.log'})")
    with open(venv / "pip-install.log", "w") as pip_log:
        proc = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                               FEAST_REQUIREMENT], stdout=pip_log, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = (venv / "pip-install.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"pip install {FEAST_REQUIREMENT} failed:\n{tail}")
    version = installed_version()
    if version != FEAST_VERSION:
        raise RuntimeError(f"installed Feast reports version {version!r}, expected {FEAST_VERSION}")
    freeze = subprocess.run([str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True).stdout.split()
    info = {"requirement": FEAST_REQUIREMENT, "feast": version, "install_s": time.perf_counter() - began,
            "python": subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                                     capture_output=True, text=True, check=True).stdout.strip(),
            "packages": {n: v for n, _, v in (p.partition("==") for p in freeze)}}
    marker.write_text(json.dumps(info, indent=2))
    info["reused"] = False
    return info


_FEAST_TYPES = {"Int32", "Int64", "Float32", "Float64", "String", "Bool"}


def feast_definitions(repo: Path) -> tuple[str, dict[str, Any]]:
    """Feast's definitions.py, generated from this project's applied definitions (so that a change
    to feature_repo/ changes both sides), and the facts the checks need (views, ttls, features)."""
    from featurestore import FeatureStore
    from featurestore.definitions.feature_view import FeatureViewProjection

    store = FeatureStore(repo)
    views = store.list_feature_views()
    services = store.list_feature_services()
    entities = store.list_entities()
    store.close()
    key_types: dict[str, str] = {}
    for v in views:
        for f in v.schema:
            if f.name in v.join_keys:
                key_types[f.name] = f.dtype.name
    lines = [
        '"""Generated by benchmarks/run.py from feature_repo/ (entities.py, features.py): the same',
        'entity, views, sources and feature service for Feast. Do not edit: rewritten on every run."""',
        "",
        "from datetime import timedelta",
        "",
        "from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType",
        "from feast.types import Bool, Float32, Float64, Int32, Int64, String",
        "",
    ]
    for e in entities:
        if len(e.join_keys) != 1:
            raise RuntimeError(f"entity {e.name!r}: only single-key entities are translated to Feast")
        key_type = key_types.get(e.join_keys[0], "Int64")
        value_type = {"Int64": "INT64", "Int32": "INT32", "String": "STRING"}[key_type]
        lines.append(f"{e.name} = Entity(name={e.name!r}, join_keys={list(e.join_keys)!r}, "
                     f"value_type=ValueType.{value_type})")
    lines.append("")
    facts: dict[str, Any] = {"views": {}}
    for v in views:
        src = v.file_source
        if src is None or v.transformation is not None or v.aggregations:
            raise RuntimeError(f"view {v.name!r}: only plain views over a FileSource are translated to Feast")
        path = Path(src.path)
        path = path if path.is_absolute() else (repo / path).resolve()
        fields = []
        for f in v.schema:
            if f.dtype.name not in _FEAST_TYPES:
                raise RuntimeError(f"view {v.name!r}: type {f.dtype.name} has no translation to Feast")
            fields.append(f"Field(name={f.name!r}, dtype={f.dtype.name})")
        for key in v.join_keys:  # Feast wants the join key's column in the schema
            if key not in {f.name for f in v.schema}:
                fields.insert(0, f"Field(name={key!r}, dtype={key_types.get(key, 'Int64')})")
        ttl = "timedelta(0),  # no ttl" if v.ttl is None else f"timedelta(seconds={int(v.ttl.total_seconds())}),"
        created = src.created_timestamp_column
        lines += [
            f"{v.name} = FeatureView(",
            f"    name={v.name!r},",
            f"    entities=[{', '.join(v.entity_names)}],",
            f"    ttl={ttl}",
            "    schema=[",
            *(f"        {f}," for f in fields),
            "    ],",
            f"    source=FileSource(name={v.name + '_source'!r}, path={str(path)!r}, "
            f"timestamp_field={src.timestamp_field!r}, created_timestamp_column={created!r}),",
            "    online=True,",
            ")",
            "",
        ]
        facts["views"][v.name] = {
            "path": str(path), "timestamp_field": src.timestamp_field, "created_timestamp_column": created,
            "ttl_seconds": None if v.ttl is None else v.ttl.total_seconds(), "features": list(v.feature_names),
            "join_keys": list(v.join_keys),
        }
    for s in services:
        parts = []
        for p in s.features:
            if isinstance(p, FeatureViewProjection):
                parts.append(p.view_name if p.features is None else f"{p.view_name}[{list(p.features)!r}]")
            else:  # a whole view
                parts.append(p.name)
        lines += [f"{s.name} = FeatureService(name={s.name!r}, features=[{', '.join(parts)}])", ""]
    return "\n".join(lines), facts


def write_feast_repo(run: Run) -> dict[str, Any]:
    """The Feast repo next to ours: feature_store.yaml (DuckDB offline, Redis online on our server's
    database 1) and the generated definitions; its registry starts empty."""
    assert run.server is not None
    repo = run.feast_repo
    (repo / "data").mkdir(parents=True, exist_ok=True)
    h = run.server.handle
    # Feast json-decodes each connection-string parameter: quoting keeps the password a string.
    connection = f'{h.host}:{h.port},db={FEAST_DB},password="{run.server.password}"'
    yaml_text = "\n".join([
        "# Written by benchmarks/run.py for this run (it holds the Redis password: owner-readable only).",
        f"project: {FEAST_PROJECT}",
        "provider: local",
        "registry: data/registry.db",
        "offline_store:",
        "  type: duckdb",
        "online_store:",
        "  type: redis",
        f"  connection_string: '{connection}'",
        "entity_key_serialization_version: 3",
        "",
    ])
    _write_private(repo / "feature_store.yaml", yaml_text)
    code, facts = feast_definitions(run.repo)
    (repo / "definitions.py").write_text(code)
    clear_feast_registry(repo)
    return facts


def clear_feast_registry(repo: Path) -> None:
    (repo / "data" / "registry.db").unlink(missing_ok=True)


def clear_our_registry(repo: Path) -> None:
    for name in ("registry.db", "registry.db-wal", "registry.db-shm"):
        (repo / "data" / name).unlink(missing_ok=True)


class FeastServer:
    """``feast serve`` (HTTP, one gunicorn worker) on a free loopback port, from Feast's venv."""

    def __init__(self, venv: Path, repo: Path, log_path: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        args = ["serve", "--host", "127.0.0.1", "--port", str(self.port), *FEAST_SERVE_FLAGS]
        self.command = " ".join(["feast", *args]).replace(str(self.port), "<free port>")
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(venv / "bin" / "feast"), *args], cwd=repo,
                                     stdout=self._log, stderr=subprocess.STDOUT, **_popen_kwargs())
        self.pid = self.proc.pid
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"feast serve did not start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.2)
        self.workers = _session_pids(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> list[int]:
        """SIGTERM to gunicorn's master (it stops its workers), SIGKILL after 20 s; then SIGKILL any
        process still in the server's session, by pid. Returns the pids that had to be killed."""
        from serving import terminate

        terminate(self.proc, 20)
        killed = []
        for pid in _session_pids(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        self._log.close()
        return killed


def _session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the server was started in a session of its own)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


# -- the phases --------------------------------------------------------------------------------------


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def _load(runs: list[dict[str, Any]]) -> float | None:
    loads = [r["other_cpu_s"] / r["child_wall_s"] for r in runs if "other_cpu_s" in r and r["child_wall_s"] > 0]
    return max(loads) if loads else None


def measure_imports(run: Run) -> dict[str, Any]:
    """``import <package>`` in a fresh interpreter. Bytecode goes to a cache of this run's own
    (PYTHONPYCACHEPREFIX), written by one untimed import first, so both packages load from .pyc
    files whatever the environment's PYTHONDONTWRITEBYTECODE and install-time compilation did."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(run.workdir / "pycache")
    code = "import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)"
    sides = {"ours": (sys.executable, "featurestore")}
    if run.feast:
        sides["feast"] = (str(run.feast_python), "feast")
    n = max(IMPORT_RUNS_MIN, run.args.repeat)
    times: dict[str, list[float]] = {k: [] for k in sides}
    for i in range(1 + n):
        for side, (python, module) in sides.items():
            proc = subprocess.run([python, "-c", code.format(module)], capture_output=True, text=True, env=env,
                                  check=True, cwd=run.workdir)
            if i:
                times[side].append(float(proc.stdout.strip().splitlines()[-1]))
    out = {side: {"module": sides[side][1], "seconds": _summary(t)} for side, t in times.items()}
    run.say("import: " + ", ".join(f"{s} {out[s]['seconds']['median']:.3f} s" for s in out))
    return out


COLD_START = {
    "ours": ("from featurestore import FeatureStore\n"
             "store = FeatureStore(sys.argv[1])\n"
             "store.get_online_features(json.loads(sys.argv[2]), [{'user_id': 1}])\n"),
    "feast": ("from feast import FeatureStore\n"
              "store = FeatureStore(repo_path=sys.argv[1])\n"
              "store.get_online_features(features=json.loads(sys.argv[2]), entity_rows=[{'user_id': 1}]).to_dict()\n"),
}


def measure_cold_start(run: Run) -> dict[str, Any]:
    """A fresh interpreter's time to its first online feature vector: the import, the store from
    the repo (registry read) and one 1 x 19 lookup, lazy imports included (bytecode cached as for
    ``import``). What a short-lived job or a new serving process pays before its first answer."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(run.workdir / "pycache")
    sides = {"ours": (sys.executable, run.repo)}
    if run.feast:
        sides["feast"] = (str(run.feast_python), run.feast_repo)
    n = max(IMPORT_RUNS_MIN, run.args.repeat)
    times: dict[str, list[float]] = {k: [] for k in sides}
    for i in range(1 + n):
        for side, (python, repo) in sides.items():
            code = ("import json, sys, time\nt = time.perf_counter()\n" + COLD_START[side]
                    + "print(time.perf_counter() - t)\n")
            proc = subprocess.run([python, "-c", code, str(repo), json.dumps(run.refs)], capture_output=True,
                                  text=True, env=env, check=False, cwd=repo)
            if proc.returncode != 0:
                raise RuntimeError(f"cold start ({side}) failed:\n{proc.stderr[-3000:]}")
            if i:
                times[side].append(float(proc.stdout.strip().splitlines()[-1]))
    out = {side: {"seconds": _summary(t)} for side, t in times.items()}
    run.say("cold start to the first online lookup: " + ", ".join(f"{s} {out[s]['seconds']['median']:.3f} s"
                                                                   for s in out))
    return out


def measure_apply(run: Run) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "feast": []}
    for i in range(run.args.warmup + run.args.repeat):
        clear_our_registry(run.repo)
        r = run.ours("apply", {"repo": str(run.repo)})
        if i >= run.args.warmup:
            runs["ours"].append(r)
        if run.feast:
            clear_feast_registry(run.feast_repo)
            f = run.feast_op("apply")
            if i >= run.args.warmup:
                runs["feast"].append(f)
        run.say(f"  apply {'warm-up' if i < run.args.warmup else 'run'}: ours {r['seconds']:.3f} s"
                + (f", Feast {f['seconds']:.3f} s" if run.feast else ""))
    return {side: {"seconds": _summary([r["seconds"] for r in rs]), "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                   "max_other_load": _load(rs), "runs": rs}
            for side, rs in runs.items() if rs}


def measure_training(run: Run) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "feast": []}
    base = {"ours": training_set.run_child("baseline", run.repo)}
    if run.feast:
        base["feast"] = run.feast_op("baseline")
    for i in range(run.args.warmup + run.args.repeat):
        r = training_set.run_child("from_sources", run.repo)
        if i >= run.args.warmup:
            runs["ours"].append(r)
        if run.feast:
            f = run.feast_op("historical")
            if i >= run.args.warmup:
                runs["feast"].append(f)
        run.say(f"  training set {'warm-up' if i < run.args.warmup else 'run'}: ours {r['seconds']:.3f} s "
                f"{r['peak_rss_mb']:.0f} MB" + (f", Feast {f['seconds']:.3f} s {f['peak_rss_mb']:.0f} MB"
                                                if run.feast else ""))
    out = {}
    for side, rs in runs.items():
        if not rs:
            continue
        out[side] = {
            "seconds": _summary([r["seconds"] for r in rs]),
            "get_historical_features_s": _summary([r["get_historical_features_seconds"] for r in rs]),
            "peak_rss_mb": _summary([r["peak_rss_mb"] for r in rs]),
            "baseline_peak_rss_mb": base[side]["peak_rss_mb"],
            "rows": rs[0]["rows"], "columns": rs[0]["columns"], "null_values": rs[0]["null_values"],
            "max_other_load": _load(rs), "runs": rs,
        }
    return out


def measure_materialize(run: Run) -> dict[str, Any]:
    """No warm-up: each run is a fresh process writing every key into an empty database. Ours runs
    first in each round: its FLUSHALL also empties Feast's database, which Feast's run refills."""
    assert run.server is not None
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "feast": []}
    for i in range(run.args.repeat):
        r = materialize_once(run.repo, run.args.seed, run.server)
        runs["ours"].append(r)
        if run.feast:
            f = run.feast_op("materialize")
            f["rows"] = r["rows"]  # the same entity-view rows (checked below against the keys written)
            runs["feast"].append(f)
        run.say(f"  materialize run {i + 1}/{run.args.repeat}: ours {r['seconds']:.2f} s "
                f"({r['rows'] / r['seconds']:,.0f} rows/s, {r['peak_rss_mb']:.0f} MB)"
                + (f", Feast {f['seconds']:.2f} s ({f['rows'] / f['seconds']:,.0f} rows/s, "
                   f"{f['peak_rss_mb']:.0f} MB)" if run.feast else ""))
    out = {}
    for side, rs in runs.items():
        if not rs:
            continue
        out[side] = {
            "seconds": _summary([r["seconds"] for r in rs]),
            "rows_per_s": _summary([r["rows"] / r["seconds"] for r in rs]),
            "peak_rss_mb": _summary([r["peak_rss_mb"] for r in rs]),
            "rows": rs[0]["rows"], "keys": rs[-1]["keys"], "max_other_load": _load(rs), "runs": rs,
        }
    return out


INPROC = {"1 entity, 19 features": "online1", "100 entities, 19 features": "online100",
          "1 entity, fraud_model_v1": "service1", "100 entities, fraud_model_v1": "service100"}


def measure_online(run: Run) -> dict[str, Any]:
    """online.py's latency child (ours) and the same cases, users and call counts for Feast."""
    assert run.server is not None
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "feast": []}
    for i in range(run.args.repeat):
        r = online.run_child("latency", run.repo, run.args.seed + i, run.server)
        runs["ours"].append(r)
        if run.feast:
            runs["feast"].append(run.feast_op("online", {"seed": run.args.seed + i}))
        run.say(f"  online in process round {i + 1}/{run.args.repeat}: " + "; ".join(
            f"{side} " + ", ".join(f"{key} p50 {rs[-1][label]['p50_ms']:.3f} ms" for label, key in INPROC.items()
                                   if key in ("online1", "online100"))
            for side, rs in runs.items() if rs))
    out = {}
    for side, rs in runs.items():
        if not rs:
            continue
        out[side] = {key: {"label": label, "entities": rs[0][label]["entities"], "features": rs[0][label]["features"],
                           "calls": rs[0][label]["calls"],
                           "p50_ms": _summary([r[label]["p50_ms"] for r in rs]),
                           "p99_ms": _summary([r[label]["p99_ms"] for r in rs])}
                     for label, key in INPROC.items()}
        out[side]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rs)
        out[side]["max_other_load"] = _load(rs)
        out[side]["runs"] = rs
    return out


def measure_servers(run: Run) -> dict[str, Any]:
    """Sequential calls through each system's server, ``--repeat`` rounds in one load-generator child."""
    assert run.server is not None
    calls = {str(k): list(v) for k, v in SERVER_CALLS[run.args.scale].items()}
    logs = run.workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    server = FeatureServer(run.repo, logs / "featurestore-serve.log")
    run.started.append(server.pid)
    try:
        config, cfg = write_config(run.workdir, run.repo, run.server, run.scale.users)
        cfg["target"] = server.target
        config.write_text(json.dumps(cfg))
        r = run.ours("grpc-latency", {"config": str(config), "calls": calls, "rounds": run.args.repeat,
                                      "seed": run.args.seed}, pids=[server.pid])
    finally:
        code = server.stop()
    out["ours"] = _server_summary(r, {"health": "health", "stub1": "online1", "stub100": "online100",
                                      "client1": "client1", "client100": "client100"})
    out["ours"].update(command=server.command, exit_code=code, checks=r.get("checks"))
    run.say(f"  featurestore serve: 1 x 19 p50 {out['ours']['online1']['p50_ms']['median']:.3f} ms, 100 x 19 p50 "
            f"{out['ours']['online100']['p50_ms']['median']:.3f} ms")
    if run.feast:
        feast_server = FeastServer(run.feast_venv, run.feast_repo, logs / "feast-serve.log")
        run.started += [feast_server.pid, *feast_server.workers]
        try:
            f = run.feast_op("http-latency", {"port": feast_server.port, "calls": calls, "rounds": run.args.repeat,
                                              "seed": run.args.seed}, pids=feast_server.workers)
        finally:
            killed = feast_server.stop()
        out["feast"] = _server_summary(f, {"health": "health", "online1": "online1", "online100": "online100"})
        out["feast"].update(command=feast_server.command, killed_after_stop=killed, checks=f.get("check"))
        run.say(f"  feast serve: 1 x 19 p50 {out['feast']['online1']['p50_ms']['median']:.3f} ms, 100 x 19 p50 "
                f"{out['feast']['online100']['p50_ms']['median']:.3f} ms")
    return out


def _server_summary(result: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    rounds = result["rounds"]
    out: dict[str, Any] = {"rounds": rounds, "child_wall_s": result["child_wall_s"],
                           "max_other_load": _load([result])}
    for src, dst in keys.items():
        out[dst] = {"calls": rounds[0][src]["calls"], "p50_ms": _summary([r[src]["p50_ms"] for r in rounds]),
                    "p99_ms": _summary([r[src]["p99_ms"] for r in rounds])}
    return out


# -- correctness ---------------------------------------------------------------------------------------


def check_training_sets(run: Run, facts: dict[str, Any]) -> dict[str, Any]:
    out_dir = run.workdir / "check"
    out_dir.mkdir(parents=True, exist_ok=True)
    ours_path, feast_path = out_dir / "training_ours.parquet", out_dir / "training_feast.parquet"
    entity_file = run.repo / "data" / "entity_rows.parquet"
    run.ours("export-training", {"repo": str(run.repo), "entity_file": str(entity_file), "refs": run.refs,
                                 "out": str(ours_path)})
    run.feast_op("export-historical", {"out": str(feast_path)})
    return compare_checks.compare_training_sets(ours_path, feast_path, entity_file, facts)


def check_online(run: Run, facts: dict[str, Any]) -> dict[str, Any]:
    sample = compare_checks.online_sample_users(facts, run.scale.users, ONLINE_SAMPLE, run.args.seed)
    out_dir = run.workdir / "check"
    ours_path, feast_path = out_dir / "online_ours.json", out_dir / "online_feast.json"
    run.ours("online-sample", {"repo": str(run.repo), "refs": run.refs, "sample_users": sample,
                               "window": [w.isoformat() for w in WINDOW], "out": str(ours_path)})
    run.feast_op("online-sample", {"sample_users": sample, "out": str(feast_path)})
    return compare_checks.compare_online(json.loads(ours_path.read_text()), json.loads(feast_path.read_text()),
                                         sample, facts, WINDOW)


# -- the benchmark -------------------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args)
    began = time.perf_counter()
    machine = machine_info()
    run.say(f"scale {run.scale.name}: {run.scale.users:,} users x {run.scale.rows_per_user} rows, "
            f"{run.scale.entity_rows:,} entity rows; workdir {run.workdir}")
    run.repo, generated = prepare_repo(run.scale, run.workdir, args.seed, args.regenerate)
    run.say(f"data: {'generated' if generated else 'cached'} ({time.perf_counter() - began:.1f} s)")
    feast_install = None
    if run.feast:
        feast_install = ensure_feast_venv(run.feast_venv, run.say)
        run.say(f"Feast {feast_install['feast']} in {run.feast_venv} "
                f"({'reused' if feast_install['reused'] else 'installed'})")
    run.feast_repo = run.workdir / run.scale.name / "feast_repo"
    report: dict[str, Any] = {}
    run.server = Server(run.workdir / "server")
    try:
        run.started.append(int(json.loads((Path(run.server.handle.path) / "server.json").read_text())["pid"]))
        set_online_url(run.repo, run.server.url)
        reset_store(run.repo)
        warm_page_cache(run.repo)
        from featurestore import FeatureStore

        store = FeatureStore(run.repo)
        run.refs = [f"{v.name}:{f}" for v in store.list_feature_views() for f in v.feature_names]
        project = store.project
        store.close()
        facts = write_feast_repo(run) if run.feast else {}
        if not run.feast:
            _code, facts = feast_definitions(run.repo)  # not used, but keeps the translation exercised
        else:
            compare_checks.data_facts(facts, WINDOW)
        load_start = list(os.getloadavg())
        idle = other_load()
        if idle is not None and idle >= 0.1:
            run.say(f"warning: before measuring, other processes keep {idle:.2f} CPUs busy; figures will be noisy")

        results: dict[str, Any] = {}
        results["import"] = measure_imports(run)
        run.say("apply")
        results["apply"] = measure_apply(run)
        run.say("training sets")
        results["training_set"] = measure_training(run)
        run.say("materialize")
        results["materialize"] = measure_materialize(run)
        run.say("online, in process")
        results["online"] = measure_online(run)
        results["cold_start"] = measure_cold_start(run)
        run.say("online, through the servers")
        results["server"] = measure_servers(run)
        checks: dict[str, Any] = {}
        if run.feast:
            run.say("checks")
            checks["training_set"] = check_training_sets(run, facts)
            checks["online"] = check_online(run, facts)
            feast_keys = results["materialize"]["feast"]["keys"]
            checks["feast_keys"] = {"keys": feast_keys, "expected": facts["entities_in_window"],
                                    "ok": feast_keys == facts["entities_in_window"]}
        report = {
            "benchmark": "run",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
            "scale": {"name": run.scale.name, "users": run.scale.users, "rows_per_user": run.scale.rows_per_user,
                      "entity_rows": run.scale.entity_rows, "seed": args.seed},
            "repeat": args.repeat,
            "warmup": args.warmup,
            "features": len(run.refs),
            "refs": run.refs,
            "window": [w.isoformat() for w in WINDOW],
            "workdir": str(run.workdir),
            "definitions_sha256": hashlib.sha256(
                b"".join((EXAMPLE_REPO / f).read_bytes() for f in REPO_FILES)).hexdigest()[:16],
            "data": training_set.data_info(run.repo),
            "machine": {**machine, **_versions()},
            "server": {"name": run.server.info.get("server_name", "redis"),
                       "version": run.server.info.get("valkey_version") or run.server.info.get("redis_version"),
                       "ours": {"db": OURS_DB, "key_prefix": f"{project}:"},
                       "feast": {"db": FEAST_DB, "project": FEAST_PROJECT} if run.feast else None},
            "feast": None if not run.feast else {
                **{k: v for k, v in (feast_install or {}).items()},
                "venv": str(run.feast_venv), "repo": str(run.feast_repo),
                "offline_store": "duckdb", "online_store": "redis", "serve_flags": FEAST_SERVE_FLAGS,
            },
            "load": {"idle_other_cpus_before": idle, "load_average_start": load_start},
            "results": results,
            "checks": checks,
        }
    finally:
        run.server.stop()
    time.sleep(0.3)
    if report:
        report["load"]["load_average_end"] = list(os.getloadavg())
        report["started_pids"] = run.started
        from featurestore.online.embedded import _alive

        report["left_running"] = [pid for pid in run.started if _alive(pid)]
        report["elapsed_s"] = time.perf_counter() - began
        report["figures"] = compare_report.figures(report)
    return report


def _versions() -> dict[str, Any]:
    import grpc
    import redis

    return {"grpcio": grpc.__version__, "redis_py": redis.__version__}


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop every process


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=list(SCALES), default="S",
                        help="XS 2k users (smoke), S 100k users / 100k entity rows, M 1M / 1M (default: S)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per operation (default: 3)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed runs before the measured ones, for apply and training sets (default: 1)")
    parser.add_argument("--compare", choices=["feast"], default=None, help="also run the workload on Feast")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="where run_<scale>.json, report_<scale>.md and .svg go (default: benchmarks/results)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="repo copies, cached data, the server, logs (default: benchmarks/results/work-compare)")
    parser.add_argument("--feast-venv", type=Path, default=None,
                        help="Feast's virtual environment, created once (default: benchmarks/results/feast-venv)")
    parser.add_argument("--regenerate", action="store_true", help="generate the data even if cached")
    parser.add_argument("--seed", type=int, default=7, help="seed of the data and the requests (default: 7)")
    parser.add_argument("--quiet", action="store_true", help="print only the final table")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.spec_file)
        return
    if args.repeat < 1 or args.warmup < 0:
        parser.error("--repeat must be at least 1 and --warmup at least 0")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    report = run_benchmark(args)
    print()
    print(compare_report.format_table(report))
    args.out.mkdir(parents=True, exist_ok=True)
    scale = args.scale
    json_path = args.out / f"run_{scale}.json"
    svg_path = args.out / f"report_{scale}.svg"
    md_path = args.out / f"report_{scale}.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    svg_path.write_text(compare_report.svg_chart(report))
    md_path.write_text(compare_report.markdown(report, svg_path.name, json_path.name))
    print(f"\nwrote {json_path}\nwrote {md_path}\nwrote {svg_path}")
    if report.get("checks") and not compare_checks.all_explained(report["checks"]):
        print("\nUNEXPLAINED DIFFERENCES between the two systems: see above", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
