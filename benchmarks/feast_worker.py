"""Feast's side of ``benchmarks/run.py --compare feast``: one operation per process, in Feast's venv.

``run.py`` installs Feast into its own virtual environment and runs this script with that venv's
Python, once per measured operation (a fresh process each time, so that the peak memory is the
operation's own), and reads the JSON object this script prints as its last line on stdout::

    <feast-venv>/bin/python benchmarks/feast_worker.py --op historical --spec-file SPEC.json

The spec file (written by run.py, owner-readable only: it holds the Redis password) names the
Feast repo, the entity-rows file, the data window, the feature refs and what the operation needs.
Operations, each timed the same way as this project's side in run.py (imports first, untimed;
then only the operation):

* ``baseline``: imports only, for the memory every other figure sits on;
* ``apply``: ``feast apply``'s own code (``repo_operations.apply_total``) on a fresh registry;
* ``historical``: ``pd.read_parquet(entity rows)`` + ``get_historical_features(...).to_df()``;
* ``export-historical``: the same with ``.to_arrow()``, written to Parquet (untimed; for the check);
* ``materialize``: ``FLUSHDB`` of Feast's Redis database, then ``materialize(start, end)``;
* ``online``: in-process ``get_online_features(...).to_dict()``, the same cases, call counts and
  random users (same seed, same generator) as ``benchmarks/online.py``'s latency child;
* ``online-sample``: the online values of the given users (for the check);
* ``http-latency``: ``POST /get-online-features`` on a running ``feast serve`` (loopback,
  keep-alive ``http.client``, the JSON response parsed), 1 and 100 entities x all features, and
  ``GET /health`` as the transport floor, for ``rounds`` rounds.

Only the standard library, Feast and Feast's dependencies are imported here, plus the
stdlib-only helpers of ``training_set.py`` and ``online.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from online import LATENCY_CASES, SERVICE, _percentile
from training_set import _peak_rss_mb, _Stopwatch

# What every child imports before it times anything; the baseline child imports only these.
STACK = ("numpy", "pandas", "pyarrow", "pyarrow.parquet", "duckdb", "ibis", "redis", "feast",
         "feast.feature_store", "feast.infra.offline_stores.duckdb", "feast.infra.online_stores.redis",
         "feast.repo_operations")


def _import_stack() -> None:
    for module in STACK:
        importlib.import_module(module)


def _store(spec: dict[str, Any]) -> Any:
    from feast import FeatureStore

    return FeatureStore(repo_path=spec["repo"])


def _redis(spec: dict[str, Any]) -> Any:
    import redis

    r = spec["redis"]
    return redis.Redis(host=r["host"], port=r["port"], password=r["password"], db=r["db"], socket_timeout=600)


def op_apply(spec: dict[str, Any]) -> dict[str, Any]:
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    repo = Path(spec["repo"])
    sys.path.append(str(repo))  # as the CLI's cli_check_repo does: the definitions are imported as modules
    watch = _Stopwatch()
    apply_total(load_repo_config(repo, repo / "feature_store.yaml"), repo, skip_source_validation=False)
    return {**watch.read(), "peak_rss_mb": _peak_rss_mb()}


def _training_set(spec: dict[str, Any], to: str) -> tuple[dict[str, Any], Any]:
    import pandas as pd

    store = _store(spec)
    watch = _Stopwatch()
    entity_df = pd.read_parquet(spec["entity_file"])
    read_done = time.perf_counter()
    job = store.get_historical_features(entity_df=entity_df, features=spec["refs"])
    result = job.to_df() if to == "df" else job.to_arrow()
    timing = watch.read()
    ghf = time.perf_counter() - read_done
    return {**timing, "get_historical_features_seconds": ghf, "peak_rss_mb": _peak_rss_mb()}, result


def op_historical(spec: dict[str, Any]) -> dict[str, Any]:
    out, df = _training_set(spec, "df")
    out.update(rows=len(df), columns=len(df.columns), null_values=int(df.isna().sum().sum()))
    return out


def op_export_historical(spec: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    out, table = _training_set(spec, "arrow")
    pq.write_table(table, spec["out"])
    out.update(rows=table.num_rows, columns=table.num_columns, path=spec["out"])
    return out


def op_materialize(spec: dict[str, Any]) -> dict[str, Any]:
    client = _redis(spec)
    client.flushdb()  # Feast's own database only: every run writes every key
    store = _store(spec)
    start, end = (datetime.fromisoformat(t) for t in spec["window"])
    watch = _Stopwatch()
    store.materialize(start_date=start, end_date=end)
    timing = watch.read()
    keys = int(client.dbsize())
    client.close()
    return {**timing, "peak_rss_mb": _peak_rss_mb(), "keys": keys}


def op_online(spec: dict[str, Any]) -> dict[str, Any]:
    """The cases of online.py's latency child, with the same users (same seed, same generator)."""
    import numpy as np

    store = _store(spec)
    users = spec["users"]
    rng = np.random.default_rng(spec["seed"])
    out: dict[str, Any] = {"features_all": len(spec["refs"])}
    for label, which, per_call, warmup, calls in LATENCY_CASES:
        features: Any = store.get_feature_service(SERVICE) if which == "service" else spec["refs"]
        ids = rng.integers(0, users, (warmup + calls) * per_call).tolist()
        requests = [[{"user_id": u} for u in ids[i * per_call:(i + 1) * per_call]] for i in range(warmup + calls)]
        times = []
        response: Any = None
        for i, rows in enumerate(requests):
            began = time.perf_counter_ns()
            response = store.get_online_features(features=features, entity_rows=rows).to_dict()
            elapsed = time.perf_counter_ns() - began
            if i >= warmup:
                times.append(elapsed / 1e6)
        assert response is not None
        times.sort()
        out[label] = {
            "entities": per_call,
            "features": len(response) - 1,  # the join key comes back as a column too
            "calls": calls,
            "warmup_calls": warmup,
            "p50_ms": _percentile(times, 50),
            "p99_ms": _percentile(times, 99),
            "mean_ms": statistics.fmean(times),
            "max_ms": times[-1],
        }
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def op_online_sample(spec: dict[str, Any]) -> dict[str, Any]:
    store = _store(spec)
    users = spec["sample_users"]
    values: dict[str, list[Any]] = {}
    for i in range(0, len(users), 500):
        rows = [{"user_id": u} for u in users[i:i + 500]]
        part = store.get_online_features(features=spec["refs"], entity_rows=rows).to_dict()
        for name, column in part.items():
            values.setdefault(name, []).extend(column)
    Path(spec["out"]).write_text(json.dumps(values))
    return {"users": len(users), "path": spec["out"], "peak_rss_mb": _peak_rss_mb()}


def op_http_latency(spec: dict[str, Any]) -> dict[str, Any]:
    """Sequential calls on one keep-alive connection to ``feast serve``; responses parsed."""
    import http.client
    import random

    rng = random.Random(spec["seed"])
    conn = http.client.HTTPConnection("127.0.0.1", spec["port"], timeout=30)
    headers = {"Content-Type": "application/json"}

    def online(ids: list[int]) -> Any:
        body = json.dumps({"features": spec["refs"], "entities": {"user_id": ids}})
        conn.request("POST", "/get-online-features", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"/get-online-features answered {response.status}: {data[:500]!r}")
        return json.loads(data)

    def health(_ids: list[int]) -> Any:
        conn.request("GET", "/health")
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"/health answered {response.status}: {data[:500]!r}")
        return data

    cases = (("health", health, 1), ("online1", online, 1), ("online100", online, 100))
    calls = {int(k): v for k, v in spec["calls"].items()}  # entities -> (warm-up, timed)
    rounds = []
    check: dict[str, Any] = {}
    for _ in range(spec["rounds"]):
        result = {}
        for key, call, entities in cases:
            warmup, timed = calls[entities]
            args = [[rng.randrange(spec["users"]) for _ in range(entities)] for _ in range(warmup + timed)]
            times = []
            response: Any = None
            for i, ids in enumerate(args):
                began = time.perf_counter_ns()
                response = call(ids)
                elapsed = time.perf_counter_ns() - began
                if i >= warmup:
                    times.append(elapsed / 1e6)
            times.sort()
            result[key] = {"calls": timed, "warmup_calls": warmup, "p50_ms": _percentile(times, 50),
                           "p99_ms": _percentile(times, 99), "mean_ms": statistics.fmean(times),
                           "max_ms": times[-1]}
            if key == "online100" and not check:
                names = response["metadata"]["feature_names"]
                statuses: dict[str, int] = {}
                for res in response["results"]:
                    for s in res.get("statuses", []):
                        statuses[s] = statuses.get(s, 0) + 1
                check = {"feature_names": len(names), "statuses": statuses}
        rounds.append(result)
    conn.close()
    return {"rounds": rounds, "check": check}


OPS = {
    "baseline": lambda spec: {"seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": _peak_rss_mb()},
    "apply": op_apply,
    "historical": op_historical,
    "export-historical": op_export_historical,
    "materialize": op_materialize,
    "online": op_online,
    "online-sample": op_online_sample,
    "http-latency": op_http_latency,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--op", choices=list(OPS), required=True)
    parser.add_argument("--spec-file", type=Path, required=True)
    args = parser.parse_args()
    spec = json.loads(args.spec_file.read_text())
    stdout = sys.stdout
    # Feast prints progress and diffs on stdout: keep it for the one JSON line this script prints.
    with contextlib.redirect_stdout(sys.stderr):
        _import_stack()
        result = OPS[args.op](spec)
        import feast

        result["feast_version"] = feast.__version__
    print(json.dumps(result, default=str), file=stdout, flush=True)


if __name__ == "__main__":
    main()
