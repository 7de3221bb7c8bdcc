"""Shared fixtures: small throwaway feature repos written to a temporary folder."""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

RepoFactory = Callable[..., Path]

# A one-view repo over data/events.parquet; tests swap the data or the definitions.
BASIC_DEFS = """
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64, String

user = Entity("user", join_keys=["user_id"])
stats = FeatureView(
    "stats",
    entities=[user],
    source=FileSource("data/events.parquet", created_timestamp_column="created"),
    schema=[Field("value", Float64), Field("label", String)],
    ttl={ttl},
)
svc = FeatureService("svc", features=[stats])
"""


def ts(*args: int) -> datetime:
    """A UTC datetime: ts(2026, 1, 2, 3) is 2026-01-02 03:00 UTC."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def write_repo(
    root: Path,
    files: dict[str, str],
    data: dict[str, Any] | None = None,
    config: str = "project: test\n",
) -> Path:
    """Write featurestore.yaml, definition files and data files (Polars frames as Parquet/CSV)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "featurestore.yaml").write_text(config)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for name, frame in (data or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(frame, pl.DataFrame):
            if name.endswith(".csv"):
                frame.write_csv(path)
            else:
                frame.write_parquet(path)
        else:
            import pyarrow.parquet as pq

            pq.write_table(frame, path)
    return root


@pytest.fixture
def make_repo(tmp_path: Path) -> RepoFactory:
    counter = iter(range(1000))

    def factory(files: dict[str, str] | None = None, data: dict[str, Any] | None = None,
                config: str = "project: test\n", ttl: str = "None") -> Path:
        root = tmp_path / f"repo{next(counter)}"
        return write_repo(root, files if files is not None else {"defs.py": BASIC_DEFS.format(ttl=ttl)},
                          data, config)

    return factory


def events(rows: list[tuple[int, datetime, datetime | None, float | None, str | None]]) -> pl.DataFrame:
    """An events frame: (user_id, event_timestamp, created, value, label)."""
    return pl.DataFrame(
        rows,
        schema={
            "user_id": pl.Int64,
            "event_timestamp": pl.Datetime("us", "UTC"),
            "created": pl.Datetime("us", "UTC"),
            "value": pl.Float64,
            "label": pl.String,
        },
        orient="row",
    )


# -- the online store: one real Valkey server per test session (per xdist worker) -----------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Redis-compatible server (the embedded Valkey), started and stopped by the suite."""
    from featurestore.online import embedded

    server = embedded.acquire(tmp_path_factory.mktemp("online"))
    yield server
    embedded.release(server)


def online_config(server: Any, project: str) -> str:
    """featurestore.yaml text pointing a project at ``server``."""
    return f"project: {project}\nonline_store:\n  url: redis://:{server.password}@127.0.0.1:{server.port}/0\n"


@pytest.fixture
def project_name(request: pytest.FixtureRequest) -> str:
    """A project name unique to the test, so tests sharing the server never see each other's keys."""
    return "t_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]


@pytest.fixture
def redis_client(redis_server: Any) -> Iterator[Any]:
    import redis

    client = redis.Redis(**redis_server.connection_kwargs())
    yield client
    client.close()
