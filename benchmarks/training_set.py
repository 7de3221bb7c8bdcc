"""Benchmark of point-in-time training-set retrieval (``FeatureStore.get_historical_features``).

What it does, for one scale:

1. Builds a throwaway copy of the example repo (``feature_repo/``: one entity, three feature views,
   19 features) under ``--workdir`` and generates its data with ``feature_repo/generate_data.py``.
   The data is cached per scale, so a rerun skips generation (``--regenerate`` forces it).
2. Resets the repo's registry and offline store and applies the definitions.
3. Measures, each run in a fresh child process so that its peak memory is its own:

   * ``baseline``: a child that only imports featurestore, polars, duckdb and pyarrow (its RSS is
     the floor every other figure sits on);
   * ``io_floor``: ``pl.read_parquet`` of the three source files and the entity-rows file, i.e.
     the least any retrieval must do: read its inputs into memory;
   * ``from_sources``: reading the entity rows and ``get_historical_features`` with all 19
     features, before any materialization (the join reads the raw sources);
   * ``materialize``: ``materialize_offline(2026-01-01, 2026-04-01)``, the window of the data;
   * ``from_snapshots``: the same retrieval after materialization, reading deduplicated snapshots.

Every measured operation runs ``--repeat`` times; the figures are the median, min and max wall time
of the operation itself (the child's interpreter start-up and imports are not timed), the peak RSS
of the child (``ru_maxrss``), entity rows per second and the ratio of the median to the median I/O
floor. Files are in the page cache for every run (they are read once before measuring), so the
floor is a warm-cache floor. Nothing here asserts a timing: it prints figures and writes them to
JSON.

Run it from the repo root with the project's virtualenv::

    .venv/bin/python benchmarks/training_set.py --scale XS            # smoke run, seconds
    .venv/bin/python benchmarks/training_set.py --scale S             # 100k users, 100k entity rows
    .venv/bin/python benchmarks/training_set.py --scale M --repeat 3  # 1M users, 1M entity rows

Options: ``--workdir DIR`` (default ``benchmarks/results/work``), ``--json PATH`` (default
``benchmarks/results/training_set_<scale>.json``), ``--regenerate``, ``--seed N``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPO = ROOT / "feature_repo"
RESULTS = ROOT / "benchmarks" / "results"
REPO_FILES = ("entities.py", "features.py", "featurestore.yaml")
SOURCES = ("user_profile", "user_transactions", "user_web_sessions")
WINDOW = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
ROWS_PER_USER = 10
# What every child imports before it times anything; the baseline child imports only these.
STACK = ("duckdb", "polars", "pyarrow", "pyarrow.parquet", "featurestore", "featurestore.offline.retrieval",
         "featurestore.offline.store")


@dataclass(frozen=True)
class Scale:
    name: str
    users: int
    rows_per_user: int
    entity_rows: int


SCALES = {
    s.name: s
    for s in (
        Scale("XS", 10_000, ROWS_PER_USER, 10_000),
        Scale("S", 100_000, ROWS_PER_USER, 100_000),
        Scale("M", 1_000_000, ROWS_PER_USER, 1_000_000),
    )
}

# The operations, in the order they are run and printed.
OPERATIONS = {
    "baseline": "baseline (imports only)",
    "io_floor": "I/O floor (polars read)",
    "from_sources": "retrieval from sources",
    "materialize": "materialize_offline",
    "from_snapshots": "retrieval from snapshots",
}


# -- the child process -----------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (MiB: KiB / 1024).

    On Linux this is ``VmHWM`` from ``/proc/self/status``, the high-water mark of this process's own
    address space. ``ru_maxrss`` is not used there: the kernel carries it over ``execve`` from the
    process image being replaced, which for a child of ``subprocess`` or ``multiprocessing`` is a
    copy of the parent, so a child would report at least the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _ru_maxrss_mb()


def _ru_maxrss_mb() -> float:
    """``ru_maxrss`` in MB (KiB on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / 1024**2 if sys.platform == "darwin" else value / 1024


def _import_stack() -> None:
    """The imports every child makes before anything is timed, the baseline included."""
    for module in STACK:
        importlib.import_module(module)


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Stopwatch:
    """Wall and CPU time since it was started."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()

    def read(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall, "cpu_seconds": _cpu_seconds() - self.cpu}


def _run_operation(op: str, repo: Path) -> dict[str, Any]:
    """Run one operation once, in this (fresh) process; return its figures."""
    _import_stack()
    if op == "baseline":
        return {"seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": _peak_rss_mb()}

    import polars as pl

    from featurestore import FeatureStore

    data = repo / "data"
    entity_file = data / "entity_rows.parquet"
    if op == "io_floor":
        files = [data / "sources" / f"{name}.parquet" for name in SOURCES] + [entity_file]
        watch = _Stopwatch()
        frames = [pl.read_parquet(f) for f in files]
        timing = watch.read()
        return {**timing, "peak_rss_mb": _peak_rss_mb(), "rows_read": sum(f.height for f in frames)}

    store = FeatureStore(repo)
    if op == "materialize":
        watch = _Stopwatch()
        runs = store.materialize_offline(*WINDOW)
        timing = watch.read()
        return {
            **timing,
            "peak_rss_mb": _peak_rss_mb(),
            "rows_written": sum(r.rows for r in runs),
            "per_view_seconds": {r.view: r.seconds for r in runs},
        }

    if op in ("from_sources", "from_snapshots"):
        refs = [f"{v.name}:{f}" for v in store.list_feature_views() for f in v.feature_names]
        watch = _Stopwatch()
        entity_df = pl.read_parquet(entity_file)
        read_done = time.perf_counter()
        training = store.get_historical_features(entity_df, features=refs)
        timing = watch.read()
        ghf_seconds = time.perf_counter() - read_done
        peak = _peak_rss_mb()
        # Not timed: a digest of the result, so both retrieval paths can be checked to agree.
        return {
            **timing,
            "get_historical_features_seconds": ghf_seconds,
            "peak_rss_mb": peak,
            "features": len(refs),
            "rows": training.height,
            "columns": training.width,
            "null_values": int(sum(training.null_count().row(0))),
            "digest": str(training.hash_rows(seed=0).sum()),
            "offline_runs": len(store.offline_runs()),
        }
    raise ValueError(f"unknown operation {op!r}")


def worker_main(op: str, repo: Path) -> None:
    """Entry point of a child: print one JSON line with the operation's figures."""
    result = _run_operation(op, repo)
    result["ru_maxrss_mb"] = _ru_maxrss_mb()  # for reference only: includes the parent's peak (see above)
    print(json.dumps(result), flush=True)


# -- the parent: data, repo state, measurements ------------------------------------------------------


def _system_busy_seconds() -> float | None:
    """CPU time used by the whole machine since boot (all CPUs, all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10])  # already counted in user and nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def other_load(seconds: float = 2.0) -> float | None:
    """How many CPUs' worth of work the machine does while this process sleeps (0.0 = idle)."""
    before = _system_busy_seconds()
    time.sleep(seconds)
    after = _system_busy_seconds()
    return None if before is None or after is None else (after - before) / seconds


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(op: str, repo: Path) -> dict[str, Any]:
    """Run one operation in a fresh interpreter (this script in worker mode).

    Also notes how much CPU the rest of the machine used meanwhile (``other_cpu_s``): on a small
    machine another busy process inflates wall times, and this is how a reader can tell.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", op, "--repo", str(repo)]
    busy, children, began = _system_busy_seconds(), _children_cpu_seconds(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    busy_after, children_after = _system_busy_seconds(), _children_cpu_seconds()
    child_wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"worker {op!r} failed with exit code {proc.returncode}:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["child_wall_s"] = child_wall
    if busy is not None and busy_after is not None:
        result["other_cpu_s"] = max(0.0, (busy_after - busy) - (children_after - children))
    return result


def _generator_fingerprint() -> str:
    return hashlib.sha256((EXAMPLE_REPO / "generate_data.py").read_bytes()).hexdigest()[:16]


def prepare_repo(scale: Scale, workdir: Path, seed: int, regenerate: bool) -> tuple[Path, bool]:
    """A copy of the example repo under ``workdir/<scale>/repo`` with data; True if data was generated."""
    repo = workdir / scale.name / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    for name in REPO_FILES:
        shutil.copy2(EXAMPLE_REPO / name, repo / name)
    data = repo / "data"
    marker = data / "generated.json"
    wanted = {
        "users": scale.users,
        "rows_per_user": scale.rows_per_user,
        "entity_rows": scale.entity_rows,
        "seed": seed,
        "generator": _generator_fingerprint(),
    }
    expected = [data / "sources" / f"{n}.parquet" for n in SOURCES] + [data / "entity_rows.parquet"]
    cached = (
        not regenerate
        and marker.is_file()
        and json.loads(marker.read_text()) == wanted
        and all(p.is_file() for p in expected)
    )
    if cached:
        return repo, False
    shutil.rmtree(data, ignore_errors=True)
    sys.path.insert(0, str(EXAMPLE_REPO))
    import generate_data

    generate_data.generate(data, scale.users, scale.rows_per_user, seed, entity_rows=scale.entity_rows)
    marker.write_text(json.dumps(wanted, indent=2))
    return repo, True


def reset_store(repo: Path) -> None:
    """Forget every offline run: remove the registry and the offline store, then apply afresh."""
    from featurestore import FeatureStore

    data = repo / "data"
    shutil.rmtree(data / "offline", ignore_errors=True)
    for name in ("registry.db", "registry.db-wal", "registry.db-shm"):
        (data / name).unlink(missing_ok=True)
    FeatureStore(repo).apply()


def warm_page_cache(repo: Path) -> None:
    """Read every data file once so that no measured run pays for cold storage."""
    for path in sorted((repo / "data").rglob("*.parquet")):
        with path.open("rb") as f:
            while f.read(1 << 24):
                pass


def data_info(repo: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    files = {name: repo / "data" / "sources" / f"{name}.parquet" for name in SOURCES}
    files["entity_rows"] = repo / "data" / "entity_rows.parquet"
    return {
        name: {"rows": pq.ParquetFile(path).metadata.num_rows, "bytes": path.stat().st_size}
        for name, path in files.items()
    }


def offline_store_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "data" / "offline").rglob("*.parquet"))


def measure(
    op: str, repo: Path, repeat: int, warmup: int, log: bool, before: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Run ``op`` ``warmup`` + ``repeat`` times in fresh children; summarise the last ``repeat``."""
    runs = []
    for i in range(warmup + repeat):
        if before is not None:
            before()
        result = run_child(op, repo)
        kind = "warm-up" if i < warmup else f"run {i - warmup + 1}/{repeat}"
        if log:
            print(f"  {op} {kind}: {result['seconds']:.3f} s (cpu {result['cpu_seconds']:.2f} s), "
                  f"{result['peak_rss_mb']:.0f} MB", flush=True)
        if i >= warmup:
            runs.append(result)
    seconds = [r["seconds"] for r in runs]
    peaks = [r["peak_rss_mb"] for r in runs]
    # CPUs' worth of other processes while the child ran (1.0 = one core busy elsewhere throughout).
    others = [r["other_cpu_s"] / r["child_wall_s"] for r in runs if "other_cpu_s" in r]
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "median_cpu_s": statistics.median(r["cpu_seconds"] for r in runs),
        "max_other_load": max(others) if others else None,
        "peak_rss_mb": max(peaks),
        "runs": runs,
    }


def machine_info() -> dict[str, Any]:
    import duckdb
    import polars
    import pyarrow

    import featurestore

    mem_total_kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_kib = int(line.split()[1])
                break
    except OSError:
        pass
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_model": cpu_model,
        "mem_total_gb": round(mem_total_kib / 1024**2, 1) if mem_total_kib else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "polars": polars.__version__,
        "pyarrow": pyarrow.__version__,
        "featurestore": getattr(featurestore, "__version__", None),
        "git_commit": _git_commit(),
        "featurestore_source_sha256": _source_hash(),
    }


def _source_hash() -> str:
    """A hash of featurestore/**/*.py, so that runs on uncommitted code can still be told apart."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "featurestore").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "featurestore"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


# -- the report ------------------------------------------------------------------------------------


def add_ratios(results: dict[str, dict[str, Any]], entity_rows: int) -> None:
    floor = results["io_floor"]["median_s"]
    base = results["baseline"]["peak_rss_mb"]
    for op, r in results.items():
        r["peak_over_baseline_mb"] = r["peak_rss_mb"] - base
        if op == "baseline":
            continue
        r["ratio_to_floor"] = r["median_s"] / floor if floor else None
        if op in ("from_sources", "from_snapshots"):
            r["entity_rows_per_s"] = entity_rows / r["median_s"]
            r["get_historical_features_median_s"] = statistics.median(
                x["get_historical_features_seconds"] for x in r["runs"]
            )


def machine_line(m: dict[str, Any]) -> str:
    """The machine and library versions a report's figures come from."""
    return (f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {m['mem_total_gb']} GB, Python {m['python']}, "
            f"duckdb {m['duckdb']}, polars {m['polars']}, pyarrow {m['pyarrow']}, commit {m['git_commit']} "
            f"(featurestore/ sha256 {m['featurestore_source_sha256']})")


def format_table(report: dict[str, Any]) -> str:
    scale = report["scale"]
    m = report["machine"]
    res = report["results"]
    lines = [
        f"training-set benchmark, scale {scale['name']}: {scale['users']:,} users x {scale['rows_per_user']} "
        f"rows/user, {scale['entity_rows']:,} entity rows, {report['features']} features, "
        f"repeat {report['repeat']}",
        machine_line(m),
        "",
    ]
    header = (f"{'operation':<26}{'median s':>10}{'min s':>9}{'max s':>9}{'cpu s':>8}{'peak MB':>10}{'+base MB':>10}"
              f"{'rows/s':>12}{'x floor':>9}")
    lines += [header, "-" * len(header)]
    for op, label in OPERATIONS.items():
        r = res[op]
        if op == "baseline":
            dashes = [f"{'-':>10}", f"{'-':>9}", f"{'-':>9}", f"{'-':>8}"]
            lines.append(f"{label:<26}{''.join(dashes)}{r['peak_rss_mb']:>10.0f}{'-':>10}{'-':>12}{'-':>9}")
            continue
        rate = f"{r['entity_rows_per_s']:,.0f}" if "entity_rows_per_s" in r else "-"
        lines.append(
            f"{label:<26}{r['median_s']:>10.3f}{r['min_s']:>9.3f}{r['max_s']:>9.3f}{r['median_cpu_s']:>8.2f}"
            f"{r['peak_rss_mb']:>10.0f}{r['peak_over_baseline_mb']:>10.0f}{rate:>12}{r['ratio_to_floor']:>9.2f}"
        )
    lines.append("")
    for op in ("from_sources", "from_snapshots"):
        r = res[op]
        lines.append(
            f"{OPERATIONS[op]}: get_historical_features alone {r['get_historical_features_median_s']:.3f} s "
            f"(median; the rest is reading the entity file)"
        )
    mat = res["materialize"]
    lines.append(f"materialize_offline: {mat['runs'][-1]['rows_written']:,} rows written, "
                 f"{report['offline_store_mb']:.1f} MB of snapshots; per view (last run): "
                 + ", ".join(f"{v} {s:.2f} s" for v, s in mat["runs"][-1]["per_view_seconds"].items()))
    src, snap = res["from_sources"]["runs"], res["from_snapshots"]["runs"]
    same = {r["digest"] for r in src} == {r["digest"] for r in snap} and len({r["digest"] for r in src}) == 1
    lines.append(f"results: {src[0]['rows']:,} rows x {src[0]['columns']} columns, "
                 f"{src[0]['null_values']:,} null values; both paths identical: {'yes' if same else 'NO'}")
    others = {op: r["max_other_load"] for op, r in res.items() if r.get("max_other_load") is not None}
    if others:
        worst = max(others, key=lambda op: others[op])
        note = "quiet" if others[worst] < 0.1 else "BUSY: other processes competed for the CPUs, times are inflated"
        lines.append(f"machine load: other processes kept up to {others[worst]:.2f} CPUs busy during a measured run "
                     f"({OPERATIONS[worst]}): {note}")
    data = report["data"]
    lines.append("inputs: " + ", ".join(f"{n} {d['rows']:,} rows / {d['bytes'] / 1e6:.1f} MB" for n, d in data.items()))
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    scale = SCALES[args.scale]
    workdir = (args.workdir or RESULTS / "work").resolve()
    began = time.perf_counter()
    repo, generated = prepare_repo(scale, workdir, args.seed, args.regenerate)
    gen_s = time.perf_counter() - began
    print(f"repo: {repo} (data {'generated' if generated else 'cached'}, {gen_s:.1f} s)", flush=True)
    warm_page_cache(repo)
    reset_store(repo)
    load_start = list(os.getloadavg())
    idle_load = other_load()
    if idle_load is not None and idle_load >= 0.1:
        print(f"warning: before measuring, other processes keep {idle_load:.2f} CPUs busy; "
              "wall times will be inflated", flush=True)

    log = not args.quiet
    n, w = args.repeat, args.warmup
    results: dict[str, dict[str, Any]] = {}
    results["baseline"] = measure("baseline", repo, n, 0, log)
    results["io_floor"] = measure("io_floor", repo, n, w, log)
    results["from_sources"] = measure("from_sources", repo, n, w, log)
    # Each materialization starts from an empty offline store, so the last leaves exactly one run per view.
    results["materialize"] = measure("materialize", repo, n, w, log, before=lambda: reset_store(repo))
    warm_page_cache(repo)
    results["from_snapshots"] = measure("from_snapshots", repo, n, w, log)
    add_ratios(results, scale.entity_rows)

    from featurestore import FeatureStore

    store = FeatureStore(repo)
    return {
        "benchmark": "training_set",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "scale": {"name": scale.name, "users": scale.users, "rows_per_user": scale.rows_per_user,
                  "entity_rows": scale.entity_rows, "seed": args.seed},
        "repeat": args.repeat,
        "warmup": args.warmup,
        "features": sum(len(v.feature_names) for v in store.list_feature_views()),
        "window": [w.isoformat() for w in WINDOW],
        "workdir": str(workdir),
        "data_generated_s": gen_s if generated else None,
        # The definitions are copied from feature_repo/ on every run; a change there (a ttl, say) changes results.
        "definitions_sha256": hashlib.sha256(b"".join((repo / n).read_bytes() for n in REPO_FILES)).hexdigest()[:16],
        "data": data_info(repo),
        "offline_store_mb": offline_store_bytes(repo) / 1e6,
        "machine": machine_info(),
        "load_average": {"start": load_start, "end": list(os.getloadavg())},
        "other_load_before_start": idle_load,
        "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=list(SCALES), default="S", help="data size (default: S)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measured operation (default: 3)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the repo copy and its cached data live (default: benchmarks/results/work)")
    parser.add_argument("--json", type=Path, default=None,
                        help="result file (default: benchmarks/results/training_set_<scale>.json)")
    parser.add_argument("--regenerate", action="store_true", help="generate the data even if cached")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed runs of each operation before the measured ones (default: 1)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the data generator (default: 7)")
    parser.add_argument("--quiet", action="store_true", help="print only the final table")
    parser.add_argument("--worker", choices=list(OPERATIONS), help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # a child process: measure one operation on --repo
        worker_main(args.worker, args.repo)
        return
    if args.repeat < 1 or args.warmup < 0:
        parser.error("--repeat must be at least 1 and --warmup at least 0")

    report = run_benchmark(args)
    print()
    print(format_table(report))
    out = args.json or RESULTS / f"training_set_{args.scale}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
