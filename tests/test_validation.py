"""Data validation with real Great Expectations, on every write path, under every policy.

A batch of five rows (two good, three failing one row-level expectation each) is written through
each path (offline snapshot, online materialization, push online, push offline) under ``fail``,
``warn`` and ``quarantine``; the tests check exactly which rows were written, the run in the
registry, the validation records, the quarantined rows (API and CLI) and the alert a real local
HTTP server receives as the configured webhook. Then: every expectation kind on crafted data,
definition errors, ``featurestore validate`` / ``profile``, and the lazy Great Expectations import.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner

from featurestore import Expect, FeatureStore, Float64, Int64, String
from featurestore.cli import cli
from featurestore.errors import DefinitionError, RepoError, ValidationError
from featurestore.repo import load_repo
from featurestore.validation import read_quarantine, validate
from tests.conftest import online_config, write_repo
from tests.hook_server import HookServer, running

T = datetime(2026, 1, 1, tzinfo=UTC)
START, END = T - timedelta(days=1), T + timedelta(days=1)
SCHEMA = {"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "age": pl.Int64, "country": pl.String}

DEFS = """
from datetime import timedelta
from featurestore import Entity, Expect, FeatureService, FeatureView, Field, FileSource, Int64, String

user = Entity("user", join_keys=["user_id"])
scores = FeatureView(
    "scores", entities=[user], source=FileSource("data/scores.parquet"{source_args}),
    schema=[Field("age", Int64), Field("country", String)],
    expectations={expectations},
    on_failure="{policy}",
)
svc = FeatureService("svc", features=[scores])
"""
ROW_EXPECTATIONS = ('[Expect.between("age", 0, 120), Expect.in_set("country", ["FR", "DE"]), '
                    'Expect.not_null("country")]')

# Users 1 and 2 are good; 3, 4 and 5 each fail one row-level expectation.
BATCH = [(1, T, 30, "FR"), (2, T, 40, "DE"), (3, T, -5, "FR"), (4, T, 50, "US"), (5, T, 60, None)]
BETWEEN, IN_SET, NOT_NULL = "between(age, min=0, max=120)", "in_set(country, values=['DE', 'FR'])", "not_null(country)"
FAILED = {3: [BETWEEN], 4: [IN_SET], 5: [NOT_NULL]}
RESULTS = [
    {"expectation": BETWEEN, "success": False, "row_level": True, "failing_rows": 1, "rows": 5, "examples": [-5],
     "observed": None},
    {"expectation": IN_SET, "success": False, "row_level": True, "failing_rows": 1, "rows": 5, "examples": ["US"],
     "observed": None},
    {"expectation": NOT_NULL, "success": False, "row_level": True, "failing_rows": 1, "rows": 5, "examples": [None],
     "observed": None},
]
FAIL_LINES = (
    f"  FAIL  {BETWEEN}: 1 of 5 rows (20.0%); e.g. -5\n"
    f"  FAIL  {IN_SET}: 1 of 5 rows (20.0%); e.g. 'US'\n"
    f"  FAIL  {NOT_NULL}: 1 of 5 rows (20.0%); e.g. None"
)
FAIL_ERROR = f"feature view 'scores': 3 expectation(s) on 5 rows, 3 failed (policy fail)\n{FAIL_LINES}"
OUTCOMES = {"fail": "nothing written", "warn": "written anyway (policy warn)", "quarantine": "3 row(s) quarantined"}
ALERT_KINDS = {"fail": ("validation_failed", "error"), "warn": ("validation_warning", "warning"),
               "quarantine": ("quarantined", "warning")}
WRITTEN = {"fail": [], "warn": [1, 2, 3, 4, 5], "quarantine": [1, 2]}
VALUES = {1: (30, "FR"), 2: (40, "DE"), 3: (-5, "FR"), 4: (50, "US"), 5: (60, None)}


def frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def entity_df(users: list[int], at: datetime) -> pl.DataFrame:
    return pl.DataFrame({"user_id": users, "event_timestamp": [at] * len(users)},
                        schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")})


def cli_run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), obj={}, catch_exceptions=False)
    return result.exit_code, result.output


# -- a webhook receiver on loopback -----------------------------------------------------------------


@pytest.fixture
def hook() -> Iterator[HookServer]:
    with running(HookServer()) as server:
        yield server


@pytest.fixture
def config(redis_server: Any, project_name: str, hook: HookServer) -> str:
    """featurestore.yaml: the shared online server, and the local webhook for alerts."""
    return online_config(redis_server, project_name) + f"alerts: {{webhook: {hook.url}}}\n"


def make_store(root: Path, config: str, *, policy: str = "fail", data: list[tuple[Any, ...]] = BATCH,
               expectations: str = ROW_EXPECTATIONS, source_args: str = "") -> FeatureStore:
    write_repo(root, {"defs.py": DEFS.format(policy=policy, expectations=expectations, source_args=source_args)},
               {"data/scores.parquet": frame(data)}, config=config)
    store = FeatureStore(root)
    store.apply()
    return store


def online_values(store: FeatureStore, users: list[int]) -> dict[int, tuple[Any, Any] | None]:
    """Each user's (age, country) online, or None when not found."""
    got = store.get_online_features(["scores:age", "scores:country"], [{"user_id": u} for u in users]).to_dict(
        include_statuses=True)
    out: dict[int, tuple[Any, Any] | None] = {}
    for i, user in enumerate(users):
        assert got["age__status"][i] == got["country__status"][i]
        out[user] = None if got["age__status"][i] == "NOT_FOUND" else (got["age"][i], got["country"][i])
    return out


def snapshot_rows(location: str) -> list[tuple[Any, ...]]:
    rows = pl.read_parquet(Path(location) / "**" / "*.parquet", hive_partitioning=False)
    return sorted(rows.select("user_id", "age", "country").iter_rows())


# -- each policy on each write path ----------------------------------------------------------------

PATHS = {
    "offline snapshot": "offline snapshot",
    "online": "online materialization",
    "push online": "push to online",
    "push offline": "push to offline",
}


@pytest.mark.parametrize("policy", ["fail", "warn", "quarantine"])
@pytest.mark.parametrize("path", list(PATHS))
def test_policy_on_write_path(tmp_path: Path, config: str, hook: HookServer, policy: str, path: str) -> None:
    pushing = path.startswith("push")
    # Pushed rows bypass the source: it only holds an older, unrelated row then.
    source = [(99, T - timedelta(days=10), 1, "FR")] if pushing else BATCH
    store = make_store(tmp_path / "repo", config, policy=policy, data=source)
    project = store.project
    stage = PATHS[path]

    def write() -> Any:
        if path == "offline snapshot":
            return store.materialize_offline(START, END)
        if path == "online":
            return store.materialize(START, END)
        return store.push("scores", frame(BATCH), to=path.removeprefix("push "))

    with store:
        if policy == "fail":
            with pytest.raises(ValidationError) as exc:
                write()
            assert str(exc.value) == FAIL_ERROR
            assert exc.value.result.policy == "fail" and not exc.value.result.success
        else:
            outcome = write()
            if pushing:
                assert outcome == len(WRITTEN[policy])
            else:
                [run_result] = outcome
                assert run_result.view == "scores"
                if path == "online":
                    assert (run_result.rows, run_result.written) == (5, len(WRITTEN[policy]))
                else:
                    assert run_result.rows == len(WRITTEN[policy])

        # What was written: exactly the rows the policy lets through.
        runs = store.registry.runs(project, "scores")
        if pushing:
            if path == "push offline" and policy != "fail":
                [run] = runs
                assert (run.kind, run.status, run.rows) == ("push", "committed", len(WRITTEN[policy]))
            else:
                assert runs == []  # pushes are validated before any run begins
        else:
            [run] = runs
            assert run.kind == ("offline" if path == "offline snapshot" else "online")
            if policy == "fail":
                assert run.status == "failed"
                assert run.message == f"ValidationError: {FAIL_ERROR}"
                assert run.location is None
            else:
                assert (run.status, run.message) == ("committed", None)
        if path == "offline snapshot":
            if policy == "fail":
                assert not list((store.config.offline_store_path / project / "scores").glob("run=*"))
            else:
                assert snapshot_rows(run.location) == [(u, *VALUES[u]) for u in WRITTEN[policy]]
        if path in ("online", "push online"):
            assert online_values(store, [1, 2, 3, 4, 5]) == {
                u: VALUES[u] if u in WRITTEN[policy] else None for u in (1, 2, 3, 4, 5)}
        else:
            assert online_values(store, [1, 2, 3, 4, 5]) == dict.fromkeys((1, 2, 3, 4, 5))
        if path == "push offline" or (path == "offline snapshot" and policy != "fail"):
            training = store.get_historical_features(entity_df([1, 2, 3, 4, 5, 99], END), "svc")
            expected = {u: VALUES[u] if u in WRITTEN[policy] else (None, None) for u in (1, 2, 3, 4, 5)}
            expected[99] = (1, "FR") if pushing else (None, None)
            assert {r[0]: (r[2], r[3]) for r in training.iter_rows()} == expected

        # The validation record.
        run_id = None if pushing else run.run_id
        [record] = store.registry.validations(project)
        assert store.registry.validations(project, "scores") == [record]
        assert record.pop("created_at")
        expected_record: dict[str, Any] = {
            "subject": "feature view 'scores'", "run_id": run_id, "stage": stage, "policy": policy, "rows": 5,
            "success": False, "failed_rows": 3 if policy == "quarantine" else 0, "results": RESULTS,
        }
        quarantine_dir = store.quarantine_path / "scores"
        if policy == "quarantine":
            (quarantine_file,) = quarantine_dir.glob("*.parquet")
            if run_id is None:  # a push has no run id: its batch is named by time and a random token
                assert re.fullmatch(r"push-\d{8}T\d{6}-[0-9a-f]{8}-3\.parquet", quarantine_file.name)
            else:
                assert quarantine_file.name == f"{run_id}-3.parquet"
            expected_record.update(quarantine=str(quarantine_file), quarantined_rows=3)
        assert record == expected_record

        # The quarantined rows, through the API and the CLI.
        quarantined = read_quarantine(store.quarantine_path, "scores")
        code, out = cli_run("quarantine", "scores", "--repo", str(store.repo_path))
        assert code == 0
        if policy == "quarantine":
            assert quarantined is not None
            rows = sorted(pl.from_arrow(quarantined).iter_rows(named=True), key=lambda r: r["user_id"])
            assert [(r["user_id"], r["age"], r["country"], r["event_timestamp"], r["__failed_expectations"],
                     r["__batch"]) for r in rows] == [
                (u, *VALUES[u], T, FAILED[u], quarantine_file.stem) for u in (3, 4, 5)]
            assert out.splitlines()[0] == f"3 quarantined row(s) of scores in {quarantine_dir}:"
            for text in ("between(age, min=0, max=120)", "in_set(country", "not_null(country)", "US", "-5"):
                assert text in out
        else:
            assert quarantined is None and not quarantine_dir.exists()
            assert out == "No quarantined rows for scores.\n"

    # The alert, as the webhook received it.
    [alert] = hook.alerts()
    kind, severity = ALERT_KINDS[policy]
    message = (f"3 of 3 expectation(s) failed on 5 rows of feature view 'scores' ({stage}): {OUTCOMES[policy]}; "
               f"{BETWEEN}: 1 of 5 rows (20.0%); e.g. -5")
    assert (alert["kind"], alert["severity"], alert["project"], alert["subject"]) == (
        kind, severity, project, "feature view 'scores'")
    assert alert["message"] == message
    assert alert["run_id"] == run_id
    assert alert["report"] == (str(quarantine_file) if policy == "quarantine" else None)
    assert alert["details"] == expected_record
    assert alert["text"] == (f"[{severity}] {project}/feature view 'scores': {message}"
                             + (f" (report: {quarantine_file})" if policy == "quarantine" else ""))


def test_a_good_batch_is_written_whole_and_raises_no_alert(tmp_path: Path, config: str, hook: HookServer) -> None:
    good = [r for r in BATCH if r[0] in (1, 2)]
    with make_store(tmp_path / "repo", config, policy="fail", data=good) as store:
        [result] = store.materialize_offline(START, END)
        assert result.rows == 2
        [online] = store.materialize(START, END)
        assert online.written == 2
        assert online_values(store, [1, 2]) == {1: (30, "FR"), 2: (40, "DE")}
        records = store.registry.validations(store.project)
        assert [(r["stage"], r["success"], r["rows"]) for r in records] == [
            ("online materialization", True, 2), ("offline snapshot", True, 2)]
    assert hook.received == []


def test_table_level_failure_under_quarantine_fails_the_run(tmp_path: Path, config: str, hook: HookServer) -> None:
    expectations = ROW_EXPECTATIONS[:-1] + ", Expect.row_count_between(max=4)]"
    with make_store(tmp_path / "repo", config, policy="quarantine", expectations=expectations) as store:
        with pytest.raises(ValidationError) as exc:
            store.materialize_offline(START, END)
        assert str(exc.value) == (
            "feature view 'scores': 4 expectation(s) on 5 rows, 4 failed (policy quarantine)\n"
            f"{FAIL_LINES}\n  FAIL  row_count_between(min=None, max=4): observed 5")
        [run] = store.registry.runs(store.project, "scores")
        assert (run.status, run.message) == ("failed", f"ValidationError: {exc.value}")
        assert not list((store.config.offline_store_path / store.project / "scores").glob("run=*"))
        assert read_quarantine(store.quarantine_path, "scores") is None  # nothing set aside: nothing written
        [record] = store.registry.validations(store.project)
        assert (record["success"], record["policy"], record["failed_rows"]) == (False, "quarantine", 3)
        assert "quarantine" not in record
        with pytest.raises(ValidationError):
            store.materialize(START, END)
        assert online_values(store, [1, 2]) == {1: None, 2: None}
    alerts = hook.alerts()
    assert [(a["kind"], a["severity"], a["report"]) for a in alerts] == [("validation_failed", "error", None)] * 2
    assert alerts[0]["message"] == (
        "4 of 4 expectation(s) failed on 5 rows of feature view 'scores' (offline snapshot): nothing written; "
        f"{BETWEEN}: 1 of 5 rows (20.0%); e.g. -5")


def test_a_failing_row_count_under_warn_still_writes(tmp_path: Path, config: str, hook: HookServer) -> None:
    with make_store(tmp_path / "repo", config, policy="warn",
                    expectations='[Expect.row_count_between(min=10)]') as store:
        [result] = store.materialize_offline(START, END)
        assert result.rows == 5
    [alert] = hook.alerts()
    assert (alert["kind"], alert["message"]) == ("validation_warning", (
        "1 of 1 expectation(s) failed on 5 rows of feature view 'scores' (offline snapshot): written anyway "
        "(policy warn); row_count_between(min=10, max=None): observed 5"))


# -- source expectations ------------------------------------------------------------------------------

# Three rows in the window (one null age), two before it (null ages too: outside, never checked).
SOURCE_ROWS = [(1, T, 30, "FR"), (2, T, None, "DE"), (3, T, 40, "FR"),
               (4, T - timedelta(days=5), None, "FR"), (5, T - timedelta(days=6), None, "FR")]
SOURCE_EXPECTATIONS = ', expectations=[Expect.not_null("age"), Expect.row_count_between(max=3)]'
SOURCE_SUBJECT = "source 'data/scores.parquet' (source) of feature view 'scores'"


@pytest.mark.parametrize("policy", ["fail", "quarantine"])
@pytest.mark.parametrize("path", ["offline snapshot", "online"])
def test_source_expectations_stop_the_run_before_any_write(
    tmp_path: Path, config: str, hook: HookServer, policy: str, path: str,
) -> None:
    with make_store(tmp_path / "repo", config, policy=policy, data=SOURCE_ROWS,
                    expectations='[Expect.not_null("country")]', source_args=SOURCE_EXPECTATIONS) as store:
        with pytest.raises(ValidationError) as exc:
            if path == "online":
                store.materialize(START, END)
            else:
                store.materialize_offline(START, END)
        # Under quarantine too: source rows cannot be set aside one by one.
        assert str(exc.value) == (
            f"{SOURCE_SUBJECT}: 2 expectation(s) on 3 rows, 1 failed (policy fail)\n"
            "  FAIL  not_null(age): 1 of 3 rows (33.3%); e.g. None\n"
            "  ok    row_count_between(min=None, max=3)")
        [run] = store.registry.runs(store.project, "scores")
        assert (run.status, run.message) == ("failed", f"ValidationError: {exc.value}")
        assert not list((store.config.offline_store_path / store.project / "scores").glob("run=*"))
        assert online_values(store, [1, 2, 3]) == {1: None, 2: None, 3: None}
        assert read_quarantine(store.quarantine_path, "scores") is None
        [record] = store.registry.validations(store.project)
        stage = "offline snapshot" if path == "offline snapshot" else "online materialization"
        assert (record["subject"], record["run_id"], record["stage"], record["policy"], record["rows"],
                record["success"]) == (SOURCE_SUBJECT, run.run_id, f"{stage}, source data/scores.parquet", "fail", 3, False)
        assert [r["success"] for r in record["results"]] == [False, True]
    [alert] = hook.alerts()
    assert (alert["kind"], alert["severity"], alert["subject"], alert["run_id"]) == (
        "validation_failed", "error", SOURCE_SUBJECT, run.run_id)


@pytest.mark.parametrize("own", ["[]", '[Expect.not_null("country")]'], ids=["source-only", "with-view-expectations"])
def test_source_expectations_under_warn(tmp_path: Path, config: str, hook: HookServer, own: str) -> None:
    """The view's policy applies to its source's expectations, whether or not it declares its own."""
    with make_store(tmp_path / "repo", config, policy="warn", data=SOURCE_ROWS, expectations=own,
                    source_args=SOURCE_EXPECTATIONS) as store:
        [result] = store.materialize_offline(START, END)
        assert result.rows == 3  # written anyway
        # A window holding only user 4's row: checked on that row alone.
        [older] = store.materialize_offline(T - timedelta(days=5, hours=1), T - timedelta(days=4, hours=23))
        assert older.rows == 1
        records = [r for r in store.registry.validations(store.project) if r["subject"] == SOURCE_SUBJECT]
        assert [(r["stage"], r["policy"], r["rows"], r["success"]) for r in records] == [
            ("offline snapshot, source data/scores.parquet", "warn", 1, False),
            ("offline snapshot, source data/scores.parquet", "warn", 3, False)]
        assert [(a["kind"], a["severity"], a["subject"]) for a in hook.alerts()] == [
            ("validation_warning", "warning", SOURCE_SUBJECT)] * 2
        assert hook.alerts()[0]["message"] == (
            f"1 of 2 expectation(s) failed on 3 rows of {SOURCE_SUBJECT} (offline snapshot, source "
            "data/scores.parquet): written anyway (policy warn); not_null(age): 1 of 3 rows (33.3%); e.g. None")


def test_a_source_whose_rows_pass_is_written(tmp_path: Path, config: str, hook: HookServer) -> None:
    good = [r for r in SOURCE_ROWS if r[2] is not None]
    with make_store(tmp_path / "clean", config, policy="fail", data=good, expectations="[]",
                    source_args=SOURCE_EXPECTATIONS) as store:
        [result] = store.materialize_offline(START, END)
        assert result.rows == 2
        [record] = store.registry.validations(store.project)
        assert (record["success"], record["rows"]) == (True, 2)
    assert hook.received == []


def test_fresh_on_a_source_with_naive_timestamps(tmp_path: Path, config: str) -> None:
    """Naive source timestamps are UTC (FileSource docs): a row one day old is fresh within two days."""
    data = pl.DataFrame({"user_id": [1, 2], "event_timestamp": [datetime(2026, 1, 1), datetime(2026, 1, 1)],
                         "age": [30, 40], "country": ["FR", "DE"]})
    write_repo(tmp_path / "repo", {"defs.py": DEFS.format(
        policy="fail", expectations="[]",
        source_args=", expectations=[Expect.fresh(timedelta(days=2))]")}, {"data/scores.parquet": data},
        config=config)
    store = FeatureStore(tmp_path / "repo")
    store.apply()
    [result] = store.validate("scores", START, END)
    assert result.explain() == (f"{SOURCE_SUBJECT}: 1 expectation(s) on 2 rows, all passed (policy fail)\n"
                                "  ok    fresh(2 days, 0:00:00)")


# -- push: quarantined batches are all kept ------------------------------------------------------------


def test_every_quarantined_push_is_kept(tmp_path: Path, config: str) -> None:
    with make_store(tmp_path / "repo", config, policy="quarantine", data=[(99, T, 1, "FR")]) as store:
        for user in (10, 11):  # two pushes, one bad row each
            assert store.push("scores", frame([(user, T, 500, "FR"), (user + 10, T, 20, "DE")])) == 1
        quarantined = read_quarantine(store.quarantine_path, "scores")
        assert quarantined is not None
        assert sorted(quarantined.column("user_id").to_pylist()) == [10, 11]
        assert online_values(store, [10, 11, 20, 21]) == {10: None, 11: None, 20: (20, "DE"), 21: (20, "DE")}


# -- every expectation kind, passing and failing ----------------------------------------------------------

NOW = datetime(2026, 1, 10, tzinfo=UTC)
TABLE = pa.table({
    "id": pa.array([1, 2, 3, 4, 5, 5], pa.int64()),
    "code": ["AB-1", "AB-2", "xx", "AB-4", "AB-5", None],
    "x": pa.array([1.0, 2.0, 3.0, None, 50.0, 6.0]),
    "ts": pa.array([NOW - timedelta(days=d) for d in range(1, 7)], pa.timestamp("us", "UTC")),
})
KINDS = [
    # (expectation, success, failing rows (row-level) or observed (table-level), examples)
    (Expect.not_null("id"), True, 0, []),
    (Expect.not_null("x"), False, 1, [None]),
    (Expect.not_null("x", mostly=0.8), True, 1, [None]),  # 5 of 6 rows have a value
    (Expect.not_null("x", mostly=0.9), False, 1, [None]),
    (Expect.between("x", 0, 50), True, 0, []),
    (Expect.between("x", 0, 10), False, 1, [50.0]),
    (Expect.between("x", min=0), True, 0, []),
    (Expect.between("x", max=10), False, 1, [50.0]),
    (Expect.between("x", 0, 10, mostly=0.8), True, 1, [50.0]),  # 4 of 5 values
    (Expect.between("x", 0, 10, mostly=0.9), False, 1, [50.0]),
    (Expect.in_set("code", ["AB-1", "AB-2", "AB-4", "AB-5", "xx"]), True, 0, []),
    (Expect.in_set("code", ["AB-1", "AB-2", "AB-4", "AB-5"]), False, 1, ["xx"]),
    (Expect.in_set("id", [1, 2, 3, 4, 5]), True, 0, []),
    (Expect.unique("code"), True, 0, []),  # nulls are not values
    (Expect.unique("id"), False, 2, [5, 5]),
    (Expect.regex("code", r"^(?:AB-\d|xx)$"), True, 0, []),
    (Expect.regex("code", r"^AB-\d$"), False, 1, ["xx"]),
    (Expect.regex("code", r"^AB-\d$", mostly=0.8), True, 1, ["xx"]),
    (Expect.type("x", Float64), True, "double", []),
    (Expect.type("id", Int64), True, "int64", []),
    (Expect.type("code", String), True, "string", []),
    (Expect.type("x", Int64), False, "double", []),
    (Expect.type("id", String), False, "int64", []),
    (Expect.row_count_between(1, 6), True, 6, []),
    (Expect.row_count_between(min=7), False, 6, []),
    (Expect.row_count_between(max=5), False, 6, []),
    (Expect.fresh(timedelta(days=1)), True, "2026-01-09T00:00:00+00:00", []),  # newest: one day before the end
    (Expect.fresh(timedelta(hours=23)), False, "2026-01-09T00:00:00+00:00", []),
    (Expect.null_fraction("x", at_most=0.2), True, pytest.approx(1 / 6), []),
    (Expect.null_fraction("x", at_most=0.1), False, pytest.approx(1 / 6), []),
    (Expect.null_fraction("id", at_most=0.0), True, 0.0, []),
]


@pytest.mark.parametrize(("expectation", "success", "measured", "examples"), KINDS,
                         ids=[k[0].describe() for k in KINDS])
def test_expectation_kind(expectation: Any, success: bool, measured: Any, examples: list[Any]) -> None:
    result = validate(TABLE, [expectation], subject="t", policy="warn", timestamp_column="ts", window_end=NOW)
    [outcome] = result.results
    assert (outcome.expectation, outcome.success, outcome.rows) == (expectation.describe(), success, 6)
    assert result.success is success
    if expectation.row_level:
        assert (outcome.failing_rows, list(outcome.examples), outcome.observed) == (measured, examples, None)
    else:
        assert (outcome.failing_rows, outcome.observed) == (None, measured)
        assert result.table_level_failed is (not success)


def test_explain_lines() -> None:
    result = validate(TABLE, [Expect.unique("id"), Expect.type("x", Int64), Expect.fresh(timedelta(hours=23)),
                              Expect.null_fraction("x", at_most=0.1), Expect.not_null("id")],
                      subject="t", policy="fail", timestamp_column="ts", window_end=NOW)
    assert result.explain() == (
        "t: 5 expectation(s) on 6 rows, 4 failed (policy fail)\n"
        "  FAIL  unique(id): 2 of 6 rows (33.3%); e.g. 5, 5\n"
        "  FAIL  type(x, Int64): observed 'double'\n"
        "  FAIL  fresh(23:00:00): observed '2026-01-09T00:00:00+00:00'\n"
        "  FAIL  null_fraction(x, at_most=0.1): observed 0.16666666666666663\n"
        "  ok    not_null(id)")


def test_quarantine_names_each_rows_failures() -> None:
    result = validate(TABLE, [Expect.not_null("x"), Expect.between("x", 0, 10), Expect.unique("id"),
                              Expect.regex("code", r"^AB-\d$"), Expect.not_null("code", mostly=0.5)],
                      subject="t", policy="quarantine", timestamp_column="ts", window_end=NOW)
    assert result.failed_rows == [2, 3, 4, 5]
    assert result.row_failures == {  # a passing `mostly` expectation sets no row aside
        2: [r"regex(code, pattern='^AB-\\d$')"], 3: ["not_null(x)"],
        4: ["between(x, min=0, max=10)", "unique(id)"], 5: ["unique(id)"],
    }


def test_fresh_is_judged_against_the_window_end(tmp_path: Path, config: str) -> None:
    with make_store(tmp_path / "repo", config, policy="fail", data=BATCH[:2],
                    expectations="[Expect.fresh(timedelta(days=1))]") as store:
        [ok] = store.validate("scores", START, T + timedelta(hours=12))
        assert ok.success and ok.results[0].observed == "2026-01-01T00:00:00+00:00"
        [late] = store.validate("scores", START, T + timedelta(days=3))
        assert late.explain() == (
            "feature view 'scores': 1 expectation(s) on 2 rows, 1 failed (policy fail)\n"
            "  FAIL  fresh(1 day, 0:00:00): observed '2026-01-01T00:00:00+00:00'")
        [result] = store.materialize_offline(START, T + timedelta(hours=12))
        assert result.rows == 2
        with pytest.raises(ValidationError, match=r"FAIL  fresh\(1 day, 0:00:00\)"):
            store.materialize_offline(START, T + timedelta(days=3))


@pytest.mark.parametrize("expectations", [
    [Expect.not_null("x"), Expect.not_null("x")],
    [Expect.not_null("x", mostly=0.8), Expect.null_fraction("x", at_most=0.2)],
], ids=["repeated", "equivalent"])
def test_repeated_or_equivalent_expectations_are_each_reported(expectations: list[Any]) -> None:
    result = validate(TABLE, expectations, subject="t", policy="warn", timestamp_column="ts", window_end=NOW)
    assert [r.expectation for r in result.results] == [e.describe() for e in expectations]


# -- definition errors ---------------------------------------------------------------------------------

VIEW_LINE = ('scores = FeatureView("scores", entities=[user], source=FileSource("data/scores.parquet"{src}), '
             'schema=[Field("age", Int64), Field("country", String)], expectations=[{exp}], on_failure="{policy}")\n')
HEADER = ("from datetime import timedelta\n"
          "from featurestore import Entity, Expect, FeatureView, Field, FileSource, Int64, String\n"
          'user = Entity("user", join_keys=["user_id"])\n')


def load_defs(tmp_path: Path, exp: str, *, policy: str = "fail", src: str = "") -> Path:
    root = write_repo(tmp_path / "repo", {"defs.py": HEADER + VIEW_LINE.format(exp=exp, policy=policy, src=src)},
                      {"data/scores.parquet": frame(BATCH)})
    load_repo(root)
    return root


def test_unknown_column_in_a_view_expectation(tmp_path: Path) -> None:
    with pytest.raises(RepoError) as exc:
        load_defs(tmp_path, 'Expect.not_null("agee"), Expect.between("age", 0, 1)')
    defs = tmp_path / "repo" / "defs.py"
    assert exc.value.problems == [
        f"{defs}:4: feature view 'scores': expectation not_null(agee) is about column 'agee', which the view does "
        "not write; its columns: ['user_id', 'age', 'country', 'event_timestamp']"]


def test_unknown_column_in_a_source_expectation(tmp_path: Path) -> None:
    with pytest.raises(RepoError) as exc:
        load_defs(tmp_path, "", src=', expectations=[Expect.not_null("score")]')
    defs = tmp_path / "repo" / "defs.py"
    assert exc.value.problems == [
        f"{defs}:4: feature view 'scores': source 'data/scores.parquet' (source) expects not_null(score) of column "
        "'score', which it does not have; its columns: ['user_id', 'event_timestamp', 'age', 'country']"]


def test_bad_policy(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError) as exc:
        load_defs(tmp_path, 'Expect.not_null("age")', policy="drop")
    assert str(exc.value) == (f"{tmp_path / 'repo' / 'defs.py'}:4, feature view 'scores', field 'on_failure': "
                              "on_failure must be one of fail, warn, quarantine, got 'drop'")


BAD_EXPECTATIONS = [
    ('Expect.regex("country", "([A-Z]")', "regex '([A-Z]' does not compile: missing ), unterminated subpattern at "
                                          "position 0"),
    ('Expect.between("age")', "between needs min, max or both"),
    ('Expect.between("age", 5, 1)', "between: min 5 is above max 1"),
    ('Expect.between("age", "0", 1)', "min must be a number or None, got '0'"),
    ('Expect.in_set("country", [])', "in_set needs a non-empty list of values, got []"),
    ('Expect.in_set("country", "FR")', "in_set needs a non-empty list of values, got 'FR'"),
    ('Expect.not_null("age", mostly=1.5)', "mostly must be a fraction in (0, 1], got 1.5"),
    ('Expect.null_fraction("age", at_most=1)', "null_fraction needs at_most in [0, 1), got 1"),
    ("Expect.fresh(timedelta(0))", "fresh needs a positive timedelta, got datetime.timedelta(0)"),
    ("Expect.row_count_between()", "row_count_between needs min, max or both"),
    ('Expect.type("age", "int")', "type needs a feature type such as Int64, got 'int'"),
]


@pytest.mark.parametrize(("exp", "message"), BAD_EXPECTATIONS, ids=[e for e, _ in BAD_EXPECTATIONS])
def test_bad_expectation_message(tmp_path: Path, exp: str, message: str) -> None:
    with pytest.raises(DefinitionError) as exc:
        load_defs(tmp_path, exp)
    assert exc.value.reason == message
    assert str(exc.value).endswith(message)


def test_bad_expectations_name_the_file_and_line(tmp_path: Path) -> None:
    """Every definition error says where (errors.py): the line that built the bad expectation."""
    unplaced = []
    for i, (exp, _) in enumerate(BAD_EXPECTATIONS):
        with pytest.raises(DefinitionError) as exc:
            load_defs(tmp_path / str(i), exp)
        if (exc.value.file, exc.value.line) != (str(tmp_path / str(i) / "repo" / "defs.py"), 4):
            unplaced.append(f"{exp} -> {exc.value}")
    assert not unplaced, "errors without the file and line:\n" + "\n".join(unplaced)


# -- featurestore validate and profile --------------------------------------------------------------------


def test_cli_validate_writes_nothing(tmp_path: Path, config: str) -> None:
    bad = make_store(tmp_path / "bad", config, policy="quarantine")
    code, out = cli_run("validate", "scores", "--repo", str(bad.repo_path), "--start", "2025-12-31",
                        "--end", "2026-01-02")
    assert code == 1
    assert out == ("feature view 'scores': 3 expectation(s) on 5 rows, 3 failed (policy quarantine)\n"
                   f"{FAIL_LINES}\n")
    assert bad.registry.runs(bad.project) == [] and bad.registry.validations(bad.project) == []
    assert read_quarantine(bad.quarantine_path, "scores") is None
    assert not bad.config.offline_store_path.exists()

    good = make_store(tmp_path / "good", config.replace("project: ", "project: g"), data=BATCH[:2])
    code, out = cli_run("validate", "scores", "--repo", str(good.repo_path))  # default window: up to now
    assert code == 0
    assert out == ("feature view 'scores': 3 expectation(s) on 2 rows, all passed (policy fail)\n"
                   f"  ok    {BETWEEN}\n  ok    {IN_SET}\n  ok    {NOT_NULL}\n")
    assert good.registry.runs(good.project) == [] and good.registry.validations(good.project) == []

    code, out = cli_run("validate", "scores", "--repo", str(good.repo_path), "--end", "2025-12-01")
    assert code == 0 and "on 0 rows, all passed" in out

    # Only rows of the window are checked: the bad ones are at T.
    code, out = cli_run("validate", "scores", "--repo", str(bad.repo_path), "--end", "2025-12-31")
    assert code == 0 and "on 0 rows" in out


def test_cli_validate_errors(tmp_path: Path, config: str) -> None:
    store = make_store(tmp_path / "repo", config, expectations="[]")
    code, out = cli_run("validate", "scores", "--repo", str(store.repo_path))
    assert code == 1
    assert out == ("Error: feature view 'scores' declares no expectations (nor do its sources); "
                   "'featurestore profile scores' suggests some\n")
    code, out = cli_run("validate", "nope", "--repo", str(store.repo_path))
    assert (code, out) == (1, "Error: unknown feature view 'nope'; applied feature views: ['scores']\n")


PROFILE_DEFS = """
from featurestore import Bool, Entity, FeatureView, Field, FileSource, Float64, Int64, String
{imports}
user = Entity("user", join_keys=["user_id"])
scores = FeatureView(
    "scores", entities=[user], source=FileSource("data/scores.parquet"),
    schema=[Field("age", Int64), Field("country", String), Field("score", Float64), Field("vip", Bool)],
    expectations={expectations},
)
"""
PROFILE_DATA = pl.DataFrame({
    "user_id": [1, 2, 3, 4],
    "event_timestamp": [T, T, T + timedelta(hours=1), T + timedelta(hours=2)],
    "age": [20, 35, None, 61],
    "country": ["FR", "DE", "FR", None],
    "score": [0.25, 1.5, 2.75, -0.5],
    "vip": [True, False, None, True],
}, schema_overrides={"event_timestamp": pl.Datetime("us", "UTC")})


def profile_round_trip(root: Path, config: str, data: pl.DataFrame) -> tuple[str, int, str]:
    """``featurestore profile`` -> a file in the repo -> the view's expectations -> ``validate``."""
    write_repo(root, {"defs.py": PROFILE_DEFS.format(imports="", expectations="[]")},
               {"data/scores.parquet": data}, config=config)
    code, out = cli_run("apply", "--repo", str(root))
    assert code == 0, out
    code, suggested = cli_run("profile", "scores", "--repo", str(root))
    assert code == 0, suggested
    (root / "scores_expectations.py").write_text(suggested)
    (root / "defs.py").write_text(PROFILE_DEFS.format(
        imports="from scores_expectations import scores_expectations", expectations="scores_expectations"))
    code, out = cli_run("apply", "--repo", str(root))
    assert code == 0, out
    code, out = cli_run("validate", "scores", "--repo", str(root))
    return suggested, code, out


def test_profile_suggests_expectations_that_validate_passes(tmp_path: Path, config: str) -> None:
    suggested, code, out = profile_round_trip(tmp_path / "repo", config, PROFILE_DATA)
    body = suggested.split('"""')[2]
    assert body == """

from featurestore import Expect

scores_expectations = [
    Expect.not_null('user_id'),
    Expect.null_fraction('age', at_most=0.38),
    Expect.between('age', min=20, max=61),
    Expect.null_fraction('country', at_most=0.38),
    Expect.in_set('country', ['DE', 'FR']),
    Expect.not_null('score'),
    Expect.between('score', min=-1, max=3),
    Expect.null_fraction('vip', at_most=0.38),
    Expect.in_set('vip', [False, True]),
    Expect.row_count_between(min=2),
]
"""
    assert suggested.startswith('"""Expectations for feature view \'scores\', suggested by `featurestore profile '
                                "scores`.\n\nFrom 4 rows with event time before ")
    assert (code, out.splitlines()[0]) == (
        0, "feature view 'scores': 10 expectation(s) on 4 rows, all passed (policy fail)")
    store = FeatureStore(tmp_path / "repo")
    assert store.registry.runs(store.project) == []


@pytest.mark.parametrize("column", [
    pl.Series("score", [None, None, None, None], pl.Float64),  # a feature with no values yet
    pl.Series("score", [0.25, float("nan"), 2.75, -0.5]),  # NaN: missing to Great Expectations
], ids=["all-null", "nan"])
def test_profile_of_missing_values_passes_validate(tmp_path: Path, config: str, column: pl.Series) -> None:
    suggested, code, out = profile_round_trip(tmp_path / "repo", config, PROFILE_DATA.with_columns(column))
    assert code == 0, f"{suggested}\n{out}"


def test_cli_profile_output_file_and_empty_window(tmp_path: Path, config: str) -> None:
    store = make_store(tmp_path / "repo", config, data=BATCH[:2], expectations="[]")
    target = tmp_path / "suggested.py"
    code, out = cli_run("profile", "scores", "--repo", str(store.repo_path), "-o", str(target))
    assert (code, out) == (0, f"Wrote suggested expectations to {target}; review them and pass them to the view.\n")
    namespace: dict[str, Any] = {}
    exec(compile(target.read_text(), str(target), "exec"), namespace)
    assert [e.describe() for e in namespace["scores_expectations"]] == [
        "not_null(user_id)", "not_null(age)", "between(age, min=30, max=40)", "not_null(country)",
        "in_set(country, values=['DE', 'FR'])", "row_count_between(min=1, max=None)"]
    code, out = cli_run("profile", "scores", "--repo", str(store.repo_path), "--end", "2025-06-01")
    assert code == 1
    assert out.startswith("Error: feature view 'scores' has no rows between ")


# -- Great Expectations stays out of `import featurestore` ------------------------------------------------


def test_import_featurestore_does_not_import_great_expectations() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import featurestore, sys; from featurestore import Expect, FeatureView; "
         "Expect.between('a', 0, 1); print('great_expectations' in sys.modules)"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent,
    )
    assert out.stdout == "False\n"
