"""A client in another language: Node.js (@grpc/grpc-js + @grpc/proto-loader) calls GetOnlineFeatures
on ``featurestore serve`` from the .proto alone, and gets exactly what the library returns in process.

The npm packages are installed by scripts/test.sh (``npm ci --prefix tests/node_client``), never here.
Without node or them the test skips locally and fails in CI (``CI`` set).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from featurestore import FeatureStore
from featurestore.online.retrieval import FieldStatus
from tests.conftest import online_config, write_repo

ROOT = Path(__file__).resolve().parent.parent
CLIENT_DIR = ROOT / "tests" / "node_client"
CLIENT = CLIENT_DIR / "client.js"
NOW = datetime.now(UTC).replace(microsecond=0)
BIG_ID = 2**60 + 7  # beyond 2^53: a JS number cannot hold it
BIG_COUNT = 2**62 + 1
MISSING_ID = 999

DEFS = """
from datetime import timedelta
from featurestore import Array, Entity, FeatureService, FeatureView, Field, FileSource, Float32, Float64, Int64, String

user = Entity("user", join_keys=["user_id"])
stats = FeatureView(
    "stats",
    entities=[user],
    source=FileSource("data/events.parquet"),
    schema=[Field("value", Float64), Field("label", String), Field("count", Int64), Field("emb", Array(Float32))],
    ttl=timedelta(days=1),
)
svc = FeatureService("svc", features=[stats])
"""
REFS = ["stats:value", "stats:label", "stats:count", "stats:emb"]
IDS = [1, 2, 3, BIG_ID, MISSING_ID]


def ago(**kw: float) -> datetime:
    return NOW - timedelta(**kw)


ROWS = [
    (1, ago(hours=5), 0.5, "old", 1, [9.0]),
    (1, ago(hours=1), 1.1, "one", 10, [0.1, -2.5]),
    (2, ago(hours=2), None, None, None, None),  # present, every value null
    (3, ago(days=3), 3.0, "stale", 3, [3.0]),  # older than the ttl: OUTSIDE_MAX_AGE
    (BIG_ID, ago(minutes=30), -7.25, "big", BIG_COUNT, []),
]


def _micros(t: datetime) -> int:
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# -- node, the npm packages, the repo and the server ---------------------------------------------


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the client's npm packages installed (scripts/test.sh does that)."""
    path = shutil.which("node")
    problem = None
    if path is None:
        problem = "node is not on PATH"
    elif not (CLIENT_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        problem = "the Node client's packages are missing: run npm ci --prefix tests/node_client (scripts/test.sh does)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; the Node client test must run in CI")
        pytest.skip(problem)
    assert path is not None
    return path


@dataclass
class Served:
    repo: Path
    address: str


@pytest.fixture(scope="module")
def served(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A materialized repo on the session's Valkey, and ``featurestore serve`` on a free port."""
    project = "t_" + hashlib.sha1(__name__.encode()).hexdigest()[:12]
    frame = pl.DataFrame(
        ROWS,
        schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "value": pl.Float64,
                "label": pl.String, "count": pl.Int64, "emb": pl.List(pl.Float32)},
        orient="row",
    )
    tmp = tmp_path_factory.mktemp("node_client")
    repo = write_repo(tmp / "repo", {"defs.py": DEFS}, {"data/events.parquet": frame},
                      config=online_config(redis_server, project))
    with FeatureStore(repo) as store:
        store.apply()
        [run] = store.materialize(ago(days=5), NOW + timedelta(seconds=1))
        assert run.written == 4

    out, err = tmp / "serve.out", tmp / "serve.err"
    env = {k: v for k, v in os.environ.items() if k != "FEATURESTORE_SERVER_TOKEN"}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "featurestore"), "serve", "--repo", str(repo), "--port", "0",
             "--drain-seconds", "0"],
            stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while not (match := re.search(r"Serving .* on (\S+):(\d+)", out.read_text())):
            if proc.poll() is not None:
                pytest.fail(f"featurestore serve exited with {proc.returncode}:\n{err.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"featurestore serve did not get ready in 60 s:\n{err.read_text()}")
            time.sleep(0.05)
        yield Served(repo, f"127.0.0.1:{match.group(2)}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_client(node: str, address: str, features: Any, entities: dict[str, list[Any]]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, str(CLIENT), address, json.dumps(features), json.dumps(entities)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


def call(node: str, served: Served, features: Any) -> dict[str, Any]:
    # Ids as decimal strings: BIG_ID does not fit a JS number.
    result = run_client(node, served.address, features, {"user_id": [str(i) for i in IDS]})
    assert result.returncode == 0, f"node client failed ({result.returncode}):\n{result.stderr}"
    return dict(json.loads(result.stdout))


# -- what the library returns in process, in the client's JSON form -------------------------------


def _f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def _json_value(value: Any, dtype: str) -> Any:
    """A value as the Node client prints it: int64 as a decimal string, the rest unchanged (the library
    already returns Float32 values at float32 precision, as the wire carries them)."""
    if value is None:
        return None
    if dtype.startswith("Array("):
        return [_json_value(v, dtype[6:-1]) for v in value]
    if dtype == "Int64":
        return str(value)
    return value


_KINDS = {"Float64": "double_values", "String": "string_values", "Int64": "int64_values",
          "Array(Float32)": "array_values"}
_STATUSES = {FieldStatus.PRESENT: "FIELD_STATUS_PRESENT", FieldStatus.NOT_FOUND: "FIELD_STATUS_NOT_FOUND",
             FieldStatus.OUTSIDE_MAX_AGE: "FIELD_STATUS_OUTSIDE_MAX_AGE"}


def in_process(repo: Path, features: Any) -> dict[str, Any]:
    with FeatureStore(repo) as store:
        resp = store.get_online_features(features, {"user_id": IDS})
    out: dict[str, Any] = {"entities": {"user_id": [str(i) for i in IDS]}, "features": {}}
    for name, values in resp.values.items():
        dtype = repr(resp.dtypes[name])
        out["features"][name] = {
            "dtype": dtype,
            "kind": _KINDS[dtype],
            "values": [_json_value(v, dtype) for v in values],
            "statuses": [_STATUSES[s] for s in resp.statuses[name]],
            "event_timestamps": ["0" if t is None else str(_micros(t)) for t in resp.event_timestamps[name]],
        }
    return out


# -- the tests -----------------------------------------------------------------------------------


def test_feature_list_matches_the_library(node: str, served: Served) -> None:
    got = call(node, served, REFS)
    assert got == in_process(served.repo, REFS)
    # And against the data itself, so that both sides being wrong the same way cannot pass.
    features = got["features"]
    assert list(features) == ["value", "label", "count", "emb"]
    assert features["value"]["values"] == [1.1, None, None, -7.25, None]
    assert features["label"]["values"] == ["one", None, None, "big", None]
    assert features["count"]["values"] == ["10", None, None, str(BIG_COUNT), None]  # exact beyond 2^53
    assert features["emb"]["values"] == [[_f32(0.1), -2.5], None, None, [], None]
    present, missing, stale = "FIELD_STATUS_PRESENT", "FIELD_STATUS_NOT_FOUND", "FIELD_STATUS_OUTSIDE_MAX_AGE"
    for feature in features.values():
        assert feature["statuses"] == [present, present, stale, present, missing]
        stamps = feature["event_timestamps"]
        assert [stamps[0], stamps[1], stamps[3], stamps[4]] == [
            str(_micros(ago(hours=1))), str(_micros(ago(hours=2))), str(_micros(ago(minutes=30))), "0"]
    assert got["entities"] == {"user_id": [str(i) for i in IDS]}


def test_feature_service_matches_the_feature_list(node: str, served: Served) -> None:
    assert call(node, served, "svc") == call(node, served, REFS)


def test_unknown_feature_is_invalid_argument(node: str, served: Served) -> None:
    result = run_client(node, served.address, ["stats:nope"], {"user_id": [1]})
    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert "nope" in error["details"]
    assert result.stderr.startswith("INVALID_ARGUMENT: ")
