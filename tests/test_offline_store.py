"""The Parquet offline store: runs, visibility on commit, layout, and equality with the source."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.errors import MaterializationError, RetrievalError
from tests.conftest import RepoFactory, events, ts

D1, D2, D3 = ts(2026, 1, 1, 6), ts(2026, 1, 2, 6), ts(2026, 1, 3, 6)
ROWS = [
    (1, D1, D1, 1.0, "a"),
    (1, D1, D1 + timedelta(minutes=1), 1.5, "a-late"),  # same event time, created later: wins
    (2, D2, None, 2.0, "b"),
    (1, D3, None, 3.0, "c"),
]
PROBE = pl.DataFrame(
    {"user_id": [1, 1, 2, 1, 3], "event_timestamp": [D1, D2, D2, D3 + timedelta(days=1), D3]},
    schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")},
)


@pytest.fixture
def store(make_repo: RepoFactory) -> FeatureStore:
    s = FeatureStore(make_repo(data={"data/events.parquet": events(ROWS)}))
    s.apply()
    return s


def rewrite_source(store: FeatureStore, rows: list) -> None:
    events(rows).write_parquet(store.repo_path / "data" / "events.parquet")


def labels(store: FeatureStore) -> list:
    return store.get_historical_features(PROBE, ["stats:label"]).get_column("label").to_list()


def test_snapshot_layout_is_deduplicated_and_partitioned_by_date(store: FeatureStore) -> None:
    [result] = store.materialize_offline("2026-01-01", "2026-01-04")
    assert result.rows == 3  # the tie on (user 1, D1) keeps one row
    run_dir = Path(result.location)
    assert run_dir.name == f"run={result.run_id}"
    assert run_dir.parent == store.config.offline_store_path / "test" / "stats"
    parts = sorted(p.name for p in run_dir.iterdir())
    assert parts == ["__date=2026-01-01", "__date=2026-01-02", "__date=2026-01-03"]
    day1 = pq.read_table(run_dir / "__date=2026-01-01").to_pylist()
    assert [(r["user_id"], r["label"]) for r in day1] == [(1, "a-late")]
    assert not list(run_dir.parent.glob("_tmp-*"))


def test_snapshots_keep_the_created_time_and_older_ones_without_it_still_read(store: FeatureStore) -> None:
    [result] = store.materialize_offline("2026-01-01", "2026-01-04")
    day1 = Path(result.location) / "__date=2026-01-01"
    [file] = list(day1.glob("*.parquet"))
    table = pq.read_table(file)
    assert table.column("__created_ts").to_pylist() == [(D1 + timedelta(minutes=1)).replace(tzinfo=None)]
    before = store.get_historical_features(PROBE, ["stats:value", "stats:label"])
    # A snapshot written before snapshots kept the created time: the same rows without the column.
    for path in Path(result.location).rglob("*.parquet"):
        pq.write_table(pq.read_table(path).drop_columns(["__created_ts"]), path)
    assert store.get_historical_features(PROBE, ["stats:value", "stats:label"]).equals(before)
    assert labels(store) == ["a-late", "a-late", "b", "c", None]


def test_run_is_recorded(store: FeatureStore) -> None:
    [result] = store.materialize_offline("2026-01-01", "2026-01-02T12:00:00+02:00")
    [run] = store.offline_runs("stats")
    assert run.run_id == result.run_id
    assert (run.status, run.rows, run.kind) == ("committed", 2, "offline")  # D1 (deduplicated) and D2
    assert (run.window_start, run.window_end) == ("2026-01-01T00:00:00", "2026-01-02T10:00:00")
    assert run.duration_s is not None and run.duration_s >= 0
    assert run.commit_seq == 1


def test_same_answer_with_and_without_snapshots(store: FeatureStore) -> None:
    before = store.get_historical_features(PROBE, ["stats:value", "stats:label"])
    assert before.get_column("label").to_list() == ["a-late", "a-late", "b", "c", None]
    store.materialize_offline("2026-01-02", "2026-01-03")  # partial coverage
    assert store.get_historical_features(PROBE, ["stats:value", "stats:label"]).equals(before)
    store.materialize_offline("2025-01-01", "2027-01-01")  # everything
    assert store.get_historical_features(PROBE, ["stats:value", "stats:label"]).equals(before)


def test_snapshots_are_what_retrieval_reads(store: FeatureStore) -> None:
    store.materialize_offline("2026-01-01", "2026-01-04")
    rewrite_source(store, [(1, D1, D1, 9.0, "changed"), (2, D2, None, 9.0, "changed"), (1, D3, None, 9.0, "changed")])
    # The snapshot is immutable: later edits of the source do not leak into covered windows.
    assert labels(store) == ["a-late", "a-late", "b", "c", None]


def test_rerun_of_a_window_supersedes_the_older_run(store: FeatureStore) -> None:
    store.materialize_offline("2026-01-01", "2026-01-04")
    rewrite_source(store, [(1, D1, None, 9.0, "new"), (2, D2, None, 9.0, "new"), (1, D3, None, 9.0, "new")])
    store.materialize_offline("2026-01-02", "2026-01-03")  # re-snapshot one day only
    assert labels(store) == ["a-late", "a-late", "new", "c", None]
    assert [r.commit_seq for r in store.offline_runs("stats")] == [1, 2]


def test_uncommitted_run_is_invisible(store: FeatureStore) -> None:
    [result] = store.materialize_offline("2026-01-01", "2026-01-04")
    rewrite_source(store, [(1, D1, None, 9.0, "source"), (2, D2, None, 9.0, "source"), (1, D3, None, 9.0, "source")])
    # Simulate a crash between writing the files and committing the run.
    with sqlite3.connect(store.config.registry_path) as con:
        con.execute("UPDATE runs SET status = 'running', commit_seq = NULL WHERE run_id = ?", (result.run_id,))
    assert labels(store) == ["source", "source", "source", "source", None]


def test_failed_run_is_recorded_and_leaves_no_files(store: FeatureStore) -> None:
    (store.repo_path / "data" / "events.parquet").unlink()
    with pytest.raises(MaterializationError, match=r"materialize stats run .* failed: .*no parquet files found"):
        store.materialize_offline("2026-01-01", "2026-01-04")
    [run] = store.offline_runs("stats")
    assert run.status == "failed"
    assert "no parquet files found" in (run.message or "")
    view_dir = store.config.offline_store_path / "test" / "stats"
    assert not view_dir.exists() or not list(view_dir.iterdir())


def test_destructive_change_retires_snapshots(store: FeatureStore) -> None:
    store.materialize_offline("2026-01-01", "2026-01-04")
    rewrite_source(store, [(1, D1, None, 9.0, "source"), (2, D2, None, 9.0, "source"), (1, D3, None, 9.0, "source")])
    defs = store.repo_path / "defs.py"
    defs.write_text(defs.read_text().replace('Field("value", Float64), ', ""))
    store.apply(allow_destructive=True)
    view = store.get_feature_view("stats")
    from featurestore.offline.store import OfflineStore

    offline = OfflineStore(store.config.offline_store_path, store.project, store.registry, store.repo_path)
    assert offline.visible_runs(view) == []
    assert labels(store) == ["source", "source", "source", "source", None]


def test_empty_window_commits_an_empty_run(store: FeatureStore) -> None:
    [result] = store.materialize_offline("2030-01-01", "2030-02-01")
    assert result.rows == 0
    [run] = store.offline_runs("stats")
    assert (run.status, run.rows, run.location) == ("committed", 0, None)
    assert labels(store) == ["a-late", "a-late", "b", "c", None]


def test_bad_window_and_unknown_view(store: FeatureStore) -> None:
    with pytest.raises(MaterializationError, match="must be after start"):
        store.materialize_offline("2026-01-02", "2026-01-01")
    with pytest.raises(RetrievalError, match=r"unknown feature view\(s\) \['nope'\]; applied views: \['stats'\]"):
        store.materialize_offline("2026-01-01", "2026-01-02", ["nope"])
    with pytest.raises(ValueError, match="cannot read 'yesterday' as a timestamp"):
        store.materialize_offline("yesterday", "2026-01-02")


def test_csv_source_round_trip(make_repo: RepoFactory) -> None:
    defs = """
    from featurestore import Entity, FeatureView, Field, FileSource, Float64
    user = Entity("user", join_keys=["user_id"])
    stats = FeatureView("stats", entities=[user], source=FileSource("data/events.csv"), schema=[Field("value", Float64)])
    """
    csv = pl.DataFrame({"user_id": [1, 1, 1], "event_timestamp": ["2026-01-01T00:00:00"] * 2 + ["2026-01-02T00:00:00"],
                        "value": [1.0, 2.0, 3.0]})
    store = FeatureStore(make_repo(files={"defs.py": defs}, data={"data/events.csv": csv}))
    store.apply()
    probe = PROBE.head(2)
    before = store.get_historical_features(probe, ["stats:value"])
    assert before.get_column("value").to_list() == [2.0, 3.0]  # full tie: the later CSV row wins
    store.materialize_offline("2026-01-01", "2026-01-03")
    assert store.get_historical_features(probe, ["stats:value"]).equals(before)


def test_fully_covered_view_joins_without_tie_breaking(store: FeatureStore) -> None:
    from featurestore.offline.store import OfflineStore

    offline = OfflineStore(store.config.offline_store_path, store.project, store.registry, store.repo_path)
    view = store.get_feature_view("stats")
    con = store._duckdb()
    try:
        assert offline.view_rows(con, view, ["value"])[1] is True  # nothing materialized: raw source
        store.materialize_offline("2026-01-02", "2026-01-03")
        assert offline.view_rows(con, view, ["value"])[1] is True  # D1 and D3 still come from the source
        # Source statistics say every event lies in [D1, D3]: a window covering that is enough.
        store.materialize_offline("2026-01-01", "2026-01-04")
        assert offline.view_rows(con, view, ["value"])[1] is False
    finally:
        con.close()
    assert labels(store) == ["a-late", "a-late", "b", "c", None]
