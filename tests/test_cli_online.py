"""The online verbs of the command line (materialize, materialize-incremental, get-online-features,
push), through click's CliRunner, against the session's Valkey server."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import cli
from tests.conftest import RepoFactory, events, online_config, ts

# ttl=None: values never go OUTSIDE_MAX_AGE, so fixed dates in the past are served as PRESENT.
DATA = {
    "data/events.parquet": events([
        (1, ts(2026, 1, 1, 10), None, 1.0, "a"),
        (1, ts(2026, 1, 3), None, 1.5, "b"),
        (2, ts(2026, 1, 2), None, 2.0, "c"),
        (3, ts(2026, 2, 10), None, 3.0, "after the window"),
    ])
}
HEADER = ["VIEW", "RUN", "WINDOW", "ENTITIES", "WRITTEN", "SECONDS"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), obj={}, catch_exceptions=False)
    return result.exit_code, result.output


def cells(line: str) -> list[str]:
    """The cells of a table line printed by the CLI (columns are two or more spaces apart)."""
    return re.split(r"\s{2,}", line.strip())


def table_rows(out: str, header_first: str) -> list[list[str]]:
    """The rows of the table whose header starts with ``header_first`` (progress bars on stderr
    may precede it in CliRunner's output)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_first + " "))
    rows = []
    for line in lines[start:]:
        if not line.strip() or line.startswith(("Materialized", "Nothing")):
            break
        rows.append(cells(line))
    return rows


@pytest.fixture
def make_online_repo(make_repo: RepoFactory, redis_server: Any, project_name: str) -> Any:
    def factory(ttl: str = "None") -> Path:
        repo = make_repo(data=DATA, config=online_config(redis_server, project_name), ttl=ttl)
        code, out = run("apply", "--repo", str(repo))
        assert code == 0, out
        return repo

    return factory


@pytest.fixture
def repo(make_online_repo: Any) -> Path:
    return make_online_repo()


def online_windows(repo: Path, project: str) -> list[tuple[str | None, str | None, int | None]]:
    with FeatureStore(repo) as store:
        return [(r.window_start, r.window_end, r.rows)
                for r in store.registry.committed_runs(project, "stats", kind="online")]


def test_materialize_prints_a_summary(repo: Path, project_name: str) -> None:
    code, out = run("materialize", "2026-01-01", "2026-02-01", "--repo", str(repo))
    assert code == 0, out
    rows = table_rows(out, "VIEW")
    assert rows[0] == HEADER
    assert len(rows) == 2
    view, run_id, window, entities, written, seconds = rows[1]
    assert (view, window, entities, written) == (
        "stats", "2026-01-01T00:00:00+00:00 .. 2026-02-01T00:00:00+00:00", "2", "2",
    )
    assert re.fullmatch(r"\d+\.\d\d", seconds)
    assert "Materialized 1 view(s) online in " in out
    assert online_windows(repo, project_name) == [("2026-01-01T00:00:00", "2026-02-01T00:00:00", 2)]
    with FeatureStore(repo) as store:
        assert [r.run_id for r in store.registry.committed_runs(project_name, "stats", kind="online")] == [run_id]

    # Re-running the window rewrites the same versions (a tie on (event, created) goes to the later
    # write), so the values read back are unchanged.
    code, out = run("materialize", "2026-01-01", "2026-02-01", "-v", "stats", "--repo", str(repo))
    assert code == 0, out
    assert table_rows(out, "VIEW")[1][3:5] == ["2", "2"]
    code, out = run("get-online-features", "-f", "stats:value", "-e", "user_id=1", "-e", "user_id=2", "--json",
                    "--repo", str(repo))
    assert json.loads(out)["value"] == [1.5, 2.0]

    code, out = run("runs", "--view", "stats", "--repo", str(repo))
    assert code == 0, out
    runs = table_rows(out, "RUN")
    assert runs[0] == ["RUN", "VIEW", "KIND", "WINDOW", "STATUS", "ROWS", "MESSAGE"]
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in runs[1:]] == [
        ("stats", "online", "2026-01-01T00:00:00 .. 2026-02-01T00:00:00", "committed", "2"),
    ] * 2


def test_get_online_features_table(repo: Path) -> None:
    assert run("materialize", "2026-01-01", "2026-02-01", "--repo", str(repo))[0] == 0
    code, out = run("get-online-features", "-f", "stats:value", "-e", "user_id=1", "-e", "user_id=999",
                    "--repo", str(repo))
    assert code == 0, out
    assert table_rows(out, "ENTITY") == [
        ["ENTITY", "FEATURE", "VALUE", "STATUS", "EVENT TIME"],
        ["user_id=1", "value", "1.5", "PRESENT", "2026-01-03T00:00:00+00:00"],
        ["user_id=999", "value", "NOT_FOUND"],  # empty value and event time
    ]
    # Two features, a string key that is not an integer, the order of the --entity options kept.
    code, out = run("get-online-features", "-f", "stats:label", "-f", "stats:value", "-e", "user_id=2",
                    "-e", "user_id=abc", "-e", "user_id=1", "--full-feature-names", "--repo", str(repo))
    assert code == 0, out
    assert table_rows(out, "ENTITY")[1:] == [
        ["user_id=2", "stats__label", "c", "PRESENT", "2026-01-02T00:00:00+00:00"],
        ["user_id=2", "stats__value", "2.0", "PRESENT", "2026-01-02T00:00:00+00:00"],
        ["user_id=abc", "stats__label", "NOT_FOUND"],
        ["user_id=abc", "stats__value", "NOT_FOUND"],
        ["user_id=1", "stats__label", "b", "PRESENT", "2026-01-03T00:00:00+00:00"],
        ["user_id=1", "stats__value", "1.5", "PRESENT", "2026-01-03T00:00:00+00:00"],
    ]
    # A feature service; entity 3's only row is after the window, so it was never written.
    code, out = run("get-online-features", "-s", "svc", "-e", "user_id=3", "--repo", str(repo))
    assert code == 0, out
    assert table_rows(out, "ENTITY")[1:] == [["user_id=3", "value", "NOT_FOUND"], ["user_id=3", "label", "NOT_FOUND"]]


def test_get_online_features_json(repo: Path) -> None:
    assert run("materialize", "2026-01-01", "2026-02-01", "--repo", str(repo))[0] == 0
    code, out = run("get-online-features", "-f", "stats:value", "-f", "stats:label", "-e", "user_id=1",
                    "-e", "user_id=999", "--json", "--repo", str(repo))
    assert code == 0, out
    assert json.loads(out) == {
        "user_id": [1, 999],
        "value": [1.5, None],
        "label": ["b", None],
        "value__status": ["PRESENT", "NOT_FOUND"],
        "value__event_timestamp": ["2026-01-03T00:00:00+00:00", None],
        "label__status": ["PRESENT", "NOT_FOUND"],
        "label__event_timestamp": ["2026-01-03T00:00:00+00:00", None],
    }


def test_materialize_incremental_continues_from_the_last_run(repo: Path, project_name: str) -> None:
    # First run, no ttl: from the beginning.
    code, out = run("materialize-incremental", "2026-01-02T12:00:00", "--repo", str(repo))
    assert code == 0, out
    rows = table_rows(out, "VIEW")
    assert rows[0] == HEADER
    assert [rows[1][i] for i in (0, 2, 3, 4)] == ["stats", "-inf .. 2026-01-02T12:00:00+00:00", "2", "2"]
    code, out = run("get-online-features", "-f", "stats:value", "-e", "user_id=1", "--json", "--repo", str(repo))
    assert json.loads(out)["value"] == [1.0]

    # Second run: from the first run's end.
    code, out = run("materialize-incremental", "2026-02-01", "--repo", str(repo))
    assert code == 0, out
    rows = table_rows(out, "VIEW")
    assert [rows[1][i] for i in (0, 2, 3, 4)] == [
        "stats", "2026-01-02T12:00:00+00:00 .. 2026-02-01T00:00:00+00:00", "1", "1",
    ]
    code, out = run("get-online-features", "-f", "stats:value", "-e", "user_id=1", "-e", "user_id=2", "--json",
                    "--repo", str(repo))
    assert json.loads(out)["value"] == [1.5, 2.0]

    # The same END again, or an earlier one: nothing to do, and no run is recorded.
    for end in ("2026-02-01", "2026-01-20"):
        code, out = run("materialize-incremental", end, "--repo", str(repo))
        assert code == 0, out
        assert "Nothing to materialize: every view is up to date." in out
        assert "VIEW" not in out
    assert online_windows(repo, project_name) == [
        (None, "2026-01-02T12:00:00", 2),
        ("2026-01-02T12:00:00", "2026-02-01T00:00:00", 1),
    ]


def test_materialize_incremental_first_run_starts_one_ttl_before_end(make_online_repo: Any) -> None:
    repo = make_online_repo(ttl="timedelta(days=2)")
    code, out = run("materialize-incremental", "2026-01-03T12:00:00Z", "--repo", str(repo))
    assert code == 0, out
    # [Jan 1 12:00, Jan 3 12:00): user 1's Jan 3 row and user 2's Jan 2 row; Jan 1 10:00 is before it.
    assert [table_rows(out, "VIEW")[1][i] for i in (2, 3, 4)] == [
        "2026-01-01T12:00:00+00:00 .. 2026-01-03T12:00:00+00:00", "2", "2",
    ]


def test_push_parquet_and_csv_then_read_online(repo: Path, tmp_path: Path) -> None:
    assert run("materialize", "2026-01-01", "2026-02-01", "--repo", str(repo))[0] == 0
    newer = tmp_path / "newer.parquet"
    pl.DataFrame({
        "user_id": [1, 2],
        "event_timestamp": [ts(2026, 3, 1), ts(2025, 12, 1)],  # user 2's push is older than what is online
        "value": [10.5, 99.0],
        "label": ["pushed", "stale"],
    }).write_parquet(newer)
    code, out = run("push", "stats", str(newer), "--repo", str(repo))
    assert code == 0, out
    assert "Pushed 2 row(s) to stats (online)." in out
    code, out = run("get-online-features", "-f", "stats:value", "-f", "stats:label", "-e", "user_id=1",
                    "-e", "user_id=2", "--json", "--repo", str(repo))
    data = json.loads(out)
    assert (data["value"], data["label"]) == ([10.5, 2.0], ["pushed", "c"])  # newest wins
    assert data["value__event_timestamp"] == ["2026-03-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"]

    csv = tmp_path / "rows.csv"
    csv.write_text("user_id,event_timestamp,value,label\n7,2026-03-02T08:30:00,7.25,from csv\n")
    code, out = run("push", "stats", str(csv), "--repo", str(repo))
    assert code == 0, out
    assert "Pushed 1 row(s) to stats (online)." in out
    code, out = run("get-online-features", "-f", "stats:value", "-f", "stats:label", "-e", "user_id=7",
                    "--repo", str(repo))
    assert table_rows(out, "ENTITY")[1:] == [
        ["user_id=7", "value", "7.25", "PRESENT", "2026-03-02T08:30:00+00:00"],
        ["user_id=7", "label", "from csv", "PRESENT", "2026-03-02T08:30:00+00:00"],
    ]


def test_push_to_offline_feeds_training_sets_only(repo: Path, tmp_path: Path) -> None:
    pushed = tmp_path / "pushed.parquet"
    pl.DataFrame({
        "user_id": [2], "event_timestamp": [ts(2026, 1, 10)], "value": [20.0], "label": ["pushed"],
    }).write_parquet(pushed)
    code, out = run("push", "stats", str(pushed), "--to", "offline", "--repo", str(repo))
    assert code == 0, out
    assert "Pushed 1 row(s) to stats (offline)." in out

    entity_file = tmp_path / "entities.parquet"
    pl.DataFrame({
        "user_id": [2, 2, 1],
        "event_timestamp": [ts(2026, 1, 5), ts(2026, 1, 15), ts(2026, 1, 15)],
        "row": ["before the push", "after the push", "other user"],
    }).write_parquet(entity_file)
    output = tmp_path / "train.parquet"
    code, out = run("training-set", str(entity_file), "-f", "stats:value", "-f", "stats:label", "-o", str(output),
                    "--repo", str(repo))
    assert code == 0, out
    assert "Wrote 3 rows x 5 columns" in out
    train = pl.read_parquet(output)
    assert train.get_column("value").to_list() == [2.0, 20.0, 1.5]
    assert train.get_column("label").to_list() == ["c", "pushed", "b"]
    assert train.get_column("row").to_list() == ["before the push", "after the push", "other user"]

    # The online store did not receive it.
    code, out = run("get-online-features", "-f", "stats:value", "-e", "user_id=2", "--repo", str(repo))
    assert code == 0, out
    assert table_rows(out, "ENTITY")[1] == ["user_id=2", "value", "NOT_FOUND"]


# -- errors ------------------------------------------------------------------------------------


def test_get_online_features_usage_errors(repo: Path) -> None:
    code, out = run("get-online-features", "-e", "user_id=1", "--repo", str(repo))
    assert code == 2 and "pass either --features (one or more) or --service" in out
    code, out = run("get-online-features", "-f", "stats:value", "-s", "svc", "-e", "user_id=1", "--repo", str(repo))
    assert code == 2 and "pass either --features (one or more) or --service" in out
    code, out = run("get-online-features", "-f", "stats:value", "--repo", str(repo))
    assert code == 2 and "Missing option '--entity'" in out
    for bad in ("user_id", "=5", "user_id=1,country"):
        code, out = run("get-online-features", "-f", "stats:value", "-e", bad, "--repo", str(repo))
        assert code == 2, (bad, out)
        assert f"Invalid value for --entity: {bad!r}: expected KEY=VALUE, such as user_id=42" in out


def test_get_online_features_errors(repo: Path) -> None:
    code, out = run("get-online-features", "-f", "stats:value", "--entity", "user_id=1.5", "--repo", str(repo))
    assert code == 1
    assert "Error: entity_rows[0]: join key 'user_id' of view 'stats' must be an integer or a string, got float 1.5" in out
    code, out = run("get-online-features", "-f", "stats:value", "-e", "user_id=1", "-e", "user_id=true",
                    "--repo", str(repo))
    assert code == 1
    assert "entity_rows[1]: join key 'user_id' of view 'stats' must be an integer or a string, got bool True" in out
    code, out = run("get-online-features", "-f", "stats:value", "-e", "customer=1", "--repo", str(repo))
    assert code == 1
    assert "entity_rows lack join key(s) ['user_id'] of feature view 'stats'; they have ['customer']" in out
    code, out = run("get-online-features", "-f", "stats:nope", "-e", "user_id=1", "--repo", str(repo))
    assert code == 1 and "view 'stats' has no feature 'nope'" in out
    code, out = run("get-online-features", "-s", "nosuch", "-e", "user_id=1", "--repo", str(repo))
    assert code == 1 and "unknown feature service 'nosuch'" in out
    assert "Traceback" not in out


def test_push_errors(repo: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pl.DataFrame({"user_id": [1], "event_timestamp": [ts(2026, 3, 1)], "value": [1.0], "label": ["x"]}).write_parquet(good)
    code, out = run("push", "nope", str(good), "--repo", str(repo))
    assert code == 1
    assert "Error: unknown feature view 'nope'; applied feature views: ['stats']" in out
    missing = tmp_path / "missing.parquet"
    pl.DataFrame({"user_id": [1], "event_timestamp": [ts(2026, 3, 1)], "value": [1.0]}).write_parquet(missing)
    code, out = run("push", "stats", str(missing), "--repo", str(repo))
    assert code == 1 and "push to 'stats': missing column(s) ['label']" in out
    code, out = run("push", "stats", str(good), "--to", "elsewhere", "--repo", str(repo))
    assert code == 2 and "Invalid value for '--to'" in out
    code, out = run("push", "stats", str(tmp_path / "absent.parquet"), "--repo", str(repo))
    assert code == 2 and "does not exist" in out
    # Nothing was written by the failed pushes.
    code, out = run("get-online-features", "-f", "stats:value", "-e", "user_id=1", "--repo", str(repo))
    assert table_rows(out, "ENTITY")[1] == ["user_id=1", "value", "NOT_FOUND"]


def test_materialize_errors(repo: Path, project_name: str) -> None:
    code, out = run("materialize", "2026-02-01", "2026-01-01", "--repo", str(repo))
    assert code == 1
    assert "must be after start" in out
    code, out = run("materialize", "2026-01-01", "2026-01-01", "--repo", str(repo))
    assert code == 1 and "must be after start" in out
    code, out = run("materialize", "2026-01-01", "later", "--repo", str(repo))
    assert code == 2 and "cannot read 'later' as a timestamp" in out
    code, out = run("materialize", "2026-01-01", "2026-02-01", "-v", "nope", "--repo", str(repo))
    assert code == 1 and "unknown feature view(s) ['nope']" in out
    code, out = run("materialize-incremental", "whenever", "--repo", str(repo))
    assert code == 2 and "cannot read 'whenever' as a timestamp" in out
    assert online_windows(repo, project_name) == []  # no run recorded by any of these


def test_materialize_online_needs_apply(make_repo: RepoFactory, redis_server: Any, project_name: str) -> None:
    repo = make_repo(data=DATA, config=online_config(redis_server, project_name))
    code, out = run("materialize", "2026-01-01", "2026-02-01", "--repo", str(repo))
    assert code == 1 and "no feature views applied yet" in out
    code, out = run("materialize-incremental", "2026-02-01", "--repo", str(repo))
    assert code == 1 and "no feature views applied yet" in out


def test_repo_from_the_current_directory(repo: Path) -> None:
    old = os.getcwd()
    os.chdir(repo)
    try:
        code, out = run("materialize", "2026-01-01", "2026-02-01")
        assert code == 0, out
        code, out = run("get-online-features", "-f", "stats:label", "-e", "user_id=2", "--json")
    finally:
        os.chdir(old)
    assert code == 0, out
    assert json.loads(out)["label"] == ["c"]


def test_online_matches_training_set_after_a_snapshotted_correction(repo: Path, tmp_path: Path) -> None:
    """A correction (same event time, newer created time) that reaches the offline store through
    `materialize --offline` must reach the online store on the next online run too, so both serve
    the same value. Today the offline snapshot keeps no created time, so the online run writes the
    corrected value with an older version than the one stored and newest-wins drops it."""
    code, out = run("materialize", "2026-01-01", "2026-02-01", "--repo", str(repo))
    assert code == 0, out
    events([
        (1, ts(2026, 1, 1, 10), ts(2026, 1, 1, 10), 1.0, "a"),
        (1, ts(2026, 1, 3), ts(2026, 1, 3), 1.5, "b"),
        (1, ts(2026, 1, 3), ts(2026, 1, 20), 15.0, "b corrected"),  # the correction
        (2, ts(2026, 1, 2), None, 2.0, "c"),
    ]).write_parquet(repo / "data" / "events.parquet")
    code, out = run("materialize", "2026-01-01", "2026-02-01", "--offline", "--repo", str(repo))
    assert code == 0, out
    code, out = run("materialize", "2026-01-01", "2026-02-01", "--repo", str(repo))
    assert code == 0, out

    entity_file = tmp_path / "entities.parquet"
    pl.DataFrame({"user_id": [1], "event_timestamp": [ts(2026, 1, 25)]}).write_parquet(entity_file)
    output = tmp_path / "train.parquet"
    code, out = run("training-set", str(entity_file), "-f", "stats:label", "-o", str(output), "--repo", str(repo))
    assert code == 0, out
    assert pl.read_parquet(output).get_column("label").to_list() == ["b corrected"]
    code, out = run("get-online-features", "-f", "stats:label", "-e", "user_id=1", "--json", "--repo", str(repo))
    assert code == 0, out
    assert json.loads(out)["label"] == ["b corrected"]
