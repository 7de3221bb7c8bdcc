"""Airflow: the DAGs built from the registry (dags/featurestore_dags.py), parsed and run by real Airflow 3.

Airflow reads its configuration when it is imported, so this process never imports it: every
Airflow step runs in a subprocess (tests/airflow_helper.py) with an environment of its own, an
``AIRFLOW_HOME`` shared by the module (its SQLite database migrated once), the repo's dags folder
and no example DAGs. The online store is the suite's Valkey server (``online_config``), so no task
starts an embedded server; the offline store is the repo's temporary folder.

* Integrity: every DAG file imports through Airflow's ``DagBag`` with no import errors; the DAG
  ids, task ids, edges, task groups, retries and data intervals of a repo with two daily views (one
  reading the other), an offline-only view, a view on a ``timedelta`` schedule and one without
  schedule.
* Parsing is cheap (no DuckDB, Polars, Arrow, Great Expectations or Redis import, no data read) and
  follows the registry: an applied view's DAG appears at the next parse, a deleted one's goes.
* ``run_step``: terminal project errors fail the task without retries, naming view, step and
  interval; transient and unexpected errors reach Airflow unchanged, for it to retry.
* End to end with ``dag.test()``: two consecutive daily intervals, a re-run of the second that
  changes nothing, then an interval whose data fails a ``fail`` expectation.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from featurestore import FeatureStore
from featurestore.registry.sqlite import Run
from tests.conftest import online_config, ts, write_repo

HELPER = Path(__file__).with_name("airflow_helper.py")
DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"
TIMEOUT = 180  # seconds for any one Airflow subprocess call

DEFS = '''
from datetime import timedelta
from featurestore import Entity, Expect, FeatureView, Field, FileSource, Int64, String

user = Entity("user", join_keys=["user_id"])
people = FileSource("data/profile.parquet")

profile = FeatureView(
    "profile", entities=[user], source=people, schema=[Field("age", Int64), Field("country", String)],
    expectations=[Expect.between("age", 0, 120)], on_failure="fail", schedule="@daily",
)
# Reads profile on the same schedule: runs after it, in the same DAG.
doubled = FeatureView(
    "doubled", entities=[user], source=profile, schema=[Field("age2", Int64)],
    sql="SELECT user_id, event_timestamp, age * 2 AS age2 FROM source", schedule="@daily",
)
# Offline only: no materialize_online task.
archive = FeatureView(
    "archive", entities=[user], source=people, schema=[Field("country", String)], online=False, schedule="@daily",
)
# Every 6 hours: a DAG of its own. It reads profile, which runs in another DAG: no edge, no wait.
recent = FeatureView(
    "recent", entities=[user], source=profile, schema=[Field("age", Int64)],
    sql="SELECT user_id, event_timestamp, age FROM source", schedule=timedelta(hours=6),
)
# No schedule: in no DAG.
adhoc = FeatureView("adhoc", entities=[user], source=people, schema=[Field("age", Int64)])
'''

WEEKLY_DEFS = '''
from featurestore import Entity, FeatureView, Field, FileSource, String

weekly = FeatureView(
    "weekly", entities=[Entity("user", join_keys=["user_id"])], source=FileSource("data/profile.parquet"),
    schema=[Field("country", String)], schedule="@weekly",
)
'''

PROFILE_SCHEMA = {"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "age": pl.Int64,
                  "country": pl.String}
# Every interval's rows are there from the start: each run must take exactly its own interval's.
# The third day's first row fails between(age, 0, 120).
PROFILE_ROWS = [
    (1, ts(2026, 1, 1, 10), 30, "FR"),
    (2, ts(2026, 1, 1, 11), 40, "DE"),
    (1, ts(2026, 1, 2, 9), 31, "FR"),
    (3, ts(2026, 1, 2, 12), 50, "IT"),
    (1, ts(2026, 1, 3, 9), -5, "FR"),
    (2, ts(2026, 1, 3, 12), 41, "DE"),
]
VIEWS = {  # the scheduled views' task ids, in order
    "profile": ["transform", "validate", "write_offline", "materialize_online", "statistics"],
    "doubled": ["transform", "validate", "write_offline", "materialize_online", "statistics"],
    "archive": ["transform", "validate", "write_offline", "statistics"],
    "recent": ["transform", "validate", "write_offline", "materialize_online", "statistics"],
}
BETWEEN = "between(age, min=0, max=120)"


def write_feature_repo(root: Path, config: str) -> Path:
    """The repo above, applied."""
    write_repo(root, {"defs.py": DEFS},
               {"data/profile.parquet": pl.DataFrame(PROFILE_ROWS, schema=PROFILE_SCHEMA, orient="row")}, config)
    with FeatureStore(root) as store:
        store.apply()
    return root


# -- Airflow in subprocesses -----------------------------------------------------------------------


def airflow_environ(home: Path, repo: Path | None = None) -> dict[str, str]:
    """This process's environment without any Airflow or repo setting, plus Airflow's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "FEATURESTORE_REPO"}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    })
    if repo is not None:
        env["FEATURESTORE_REPO"] = str(repo)
    return env


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One AIRFLOW_HOME for the module, its SQLite database migrated once (about 3 s)."""
    home = tmp_path_factory.mktemp("airflow") / "home"
    result = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=airflow_environ(home),
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert (home / "airflow.db").is_file()
    return home


def helper(env: dict[str, str], *args: str) -> dict[str, Any]:
    """One answer of ``tests/airflow_helper.py`` run in a fresh process."""
    result = subprocess.run([sys.executable, str(HELPER), *args], env=env, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0 and result.stdout.strip(), (
        f"airflow_helper {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-5000:]}")
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


class AirflowProcess:
    """``airflow_helper.py serve``: one long-lived process answering commands (no restart between
    them). Its log (Airflow's and the tasks' output) goes to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([sys.executable, str(HELPER), "serve"], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True)
        self._answers: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self._answers.put(line)
            self._answers.put(None)

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()

    def request(self, cmd: str, **args: Any) -> tuple[dict[str, Any], str]:
        """The answer to one command, and what the process logged meanwhile."""
        assert self.proc.stdin is not None
        offset = self.log_path.stat().st_size
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        try:
            line = self._answers.get(timeout=TIMEOUT)
        except queue.Empty:
            line = None
        with open(self.log_path) as log:
            log.seek(offset)
            logged = log.read()
        if line is None:
            raise AssertionError(f"airflow_helper serve gave no answer to {cmd} {args}; log:\n{logged[-5000:]}")
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, f"{cmd} {args} failed: {answer['error']}\nlog:\n{logged[-5000:]}"
        return answer, logged

    def close(self) -> None:
        """End the process (it exits when its stdin closes; killed if it does not)."""
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):  # it died already
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._pump.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def chain_edges(prefix: str, steps: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """Task id -> (upstream, downstream) of one view's task group, a chain."""
    ids = [f"{prefix}.{s}" for s in steps]
    return {t: (ids[i - 1:i], ids[i + 1:i + 2]) for i, t in enumerate(ids)}


def expected_dags(project: str) -> dict[str, dict[str, tuple[list[str], list[str]]]]:
    daily = {**chain_edges("profile", VIEWS["profile"]), **chain_edges("doubled", VIEWS["doubled"]),
             **chain_edges("archive", VIEWS["archive"])}
    # doubled reads profile: profile's last task before doubled's first.
    daily["profile.statistics"] = (daily["profile.statistics"][0], ["doubled.transform"])
    daily["doubled.transform"] = (["profile.statistics"], daily["doubled.transform"][1])
    return {f"featurestore__{project}__daily": daily,
            f"featurestore__{project}__every_21600s": chain_edges("recent", VIEWS["recent"])}


# -- DAG integrity -----------------------------------------------------------------------------------


def test_dag_files_import_with_the_expected_dags(tmp_path: Path, airflow_home: Path, redis_server: Any,
                                                 project_name: str) -> None:
    repo = write_feature_repo(tmp_path / "repo", online_config(redis_server, project_name))
    bag = helper(airflow_environ(airflow_home, repo), "dagbag")

    assert bag["import_errors"] == {}
    expected = expected_dags(project_name)
    assert sorted(bag["dags"]) == sorted(expected)
    for dag_id, tasks in expected.items():
        dag = bag["dags"][dag_id]
        assert dag["fileloc"] == str(DAGS_FOLDER / "featurestore_dags.py")
        got = {t: (info["upstream"], info["downstream"]) for t, info in dag["tasks"].items()}
        assert got == {t: (sorted(up), sorted(down)) for t, (up, down) in tasks.items()}, dag_id
        for task_id, info in dag["tasks"].items():
            view, step = task_id.split(".")
            assert info["group"] == view  # one task group per view
            assert info["op_kwargs"] == {"repo": str(repo.resolve()), "view": view, "step": step}
            assert info["retries"] >= 1  # retries exist: a terminal failure must skip them
    # Each run covers [previous tick, tick).
    assert bag["dags"][f"featurestore__{project_name}__daily"]["interval_for_2026_01_02"] == [
        "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"]
    assert bag["dags"][f"featurestore__{project_name}__every_21600s"]["interval_for_2026_01_02"] == [
        "2026-01-01T18:00:00+00:00", "2026-01-02T00:00:00+00:00"]


# -- parsing is cheap and follows the registry ---------------------------------------------------------


def test_parsing_imports_no_data_library_and_reads_no_data(tmp_path: Path, airflow_home: Path, redis_server: Any,
                                                           project_name: str) -> None:
    repo = write_feature_repo(tmp_path / "repo", online_config(redis_server, project_name))
    parsed = helper(airflow_environ(airflow_home, repo), "parse")

    assert parsed["dag_ids"] == sorted(expected_dags(project_name))
    assert parsed["heavy_before"] == []
    assert parsed["heavy_imported"] == []  # duckdb, polars, pyarrow, great_expectations, redis
    # Only the config and the registry: no data file, not even the definitions.
    assert set(parsed["opened"]) <= {"featurestore.yaml", "data/registry.db"}, parsed["opened"]
    assert "data/registry.db" in parsed["opened"]


def test_applied_views_change_the_dags_at_the_next_parse(tmp_path: Path, airflow_home: Path, redis_server: Any,
                                                         project_name: str) -> None:
    repo = write_feature_repo(tmp_path / "repo", online_config(redis_server, project_name))
    daily, every_6h, weekly = (f"featurestore__{project_name}__{s}" for s in ("daily", "every_21600s", "weekly"))
    airflow = AirflowProcess(airflow_environ(airflow_home), tmp_path / "airflow.log")
    try:
        # Without $FEATURESTORE_REPO the DAG file fails to import, saying why.
        bag, _ = airflow.request("dagbag", repo=None)
        assert bag["dags"] == {}
        [error] = bag["import_errors"].values()
        assert "set FEATURESTORE_REPO to the feature repo" in error

        bag, _ = airflow.request("dagbag", repo=str(repo))
        assert (bag["import_errors"], sorted(bag["dags"])) == ({}, [daily, every_6h])

        (repo / "weekly.py").write_text(WEEKLY_DEFS)
        with FeatureStore(repo) as store:
            store.apply()
        bag, _ = airflow.request("dagbag", repo=str(repo))
        assert (bag["import_errors"], sorted(bag["dags"])) == ({}, [daily, every_6h, weekly])
        assert bag["dags"][weekly]["tasks"].keys() == {f"weekly.{s}" for s in VIEWS["profile"]}

        (repo / "weekly.py").unlink()
        with FeatureStore(repo) as store:
            store.apply(allow_destructive=True)
        bag, _ = airflow.request("dagbag", repo=str(repo))
        assert (bag["import_errors"], sorted(bag["dags"])) == ({}, [daily, every_6h])
    finally:
        airflow.close()
    assert airflow.proc.returncode == 0


# -- run_step ------------------------------------------------------------------------------------------

FAIL = "airflow.sdk.exceptions.AirflowFailException"
INTERVAL = "[2026-01-02 00:00 .. 2026-01-03 00:00)"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def run_step_outcomes(tmp_path_factory: pytest.TempPathFactory, airflow_home: Path, redis_server: Any) -> dict[str, Any]:
    """run_step with fake steps raising chosen errors, and real steps meeting a Redis that refuses
    connections and a dropped file-system write, in one subprocess."""
    root = tmp_path_factory.mktemp("run_step")
    repo = write_feature_repo(root / "repo", online_config(redis_server, "t_af_run_step"))
    down = write_feature_repo(root / "down", f"project: t_af_down\nonline_store:\n  url: redis://127.0.0.1:{closed_port()}/0\n")
    return {**helper(airflow_environ(airflow_home), "run-step", str(repo), str(down)), "repo": str(repo)}


@pytest.mark.parametrize("case, cause, message", [
    ("validation", "featurestore.errors.ValidationError",
     f"feature view 'profile': 1 expectation(s) on 2 rows, 1 failed (policy fail)\n  FAIL  {BETWEEN}: 1 of 2 rows (50.0%); e.g. -5"),
    ("definition", "featurestore.errors.DefinitionError", "defs.py:7, feature view 'profile': unknown column 'agee'"),
    ("online_terminal", "featurestore.errors.OnlineStoreError", "WRONGPASS invalid username-password pair"),
])
def test_run_step_fails_terminal_errors_without_retry(run_step_outcomes: dict[str, Any], case: str, cause: str,
                                                      message: str) -> None:
    outcome = run_step_outcomes[case]
    assert outcome["raised"] == FAIL
    assert outcome["message"] == f"profile.materialize_online {INTERVAL}: {message}"
    assert outcome["cause"] == cause


@pytest.mark.parametrize("case", ["online_transient", "unexpected"])
def test_run_step_lets_transient_and_unexpected_errors_through(run_step_outcomes: dict[str, Any], case: str) -> None:
    outcome = run_step_outcomes[case]
    assert outcome["raised"] != FAIL
    assert outcome["same_object"], outcome  # the very exception the step raised: Airflow retries it
    if case == "online_transient":
        assert (outcome["raised"], outcome["transient"]) == ("featurestore.errors.OnlineStoreError", True)


def test_run_step_passes_the_interval_and_refuses_runs_without_one(run_step_outcomes: dict[str, Any]) -> None:
    assert run_step_outcomes["success"] == {"raised": None, "returned": {
        "view": "profile", "repo": run_step_outcomes["repo"], "start": "2026-01-02T00:00:00+00:00",
        "end": "2026-01-03T00:00:00+00:00"}}
    assert run_step_outcomes["no_interval"]["raised"] == FAIL
    assert run_step_outcomes["no_interval"]["message"] == (
        "profile.transform: the run has no data interval (None .. None); use a schedule that gives one")
    assert run_step_outcomes["empty_interval"]["raised"] == FAIL
    assert "the run has no data interval" in run_step_outcomes["empty_interval"]["message"]


def test_run_step_retries_when_redis_is_down(run_step_outcomes: dict[str, Any]) -> None:
    """A real materialize_online step, Redis refusing connections: a transient error, for Airflow to retry."""
    outcome = run_step_outcomes["redis_down"]
    assert outcome["raised"] != FAIL, outcome
    assert outcome["transient"] is True, outcome["chain"]
    assert "Connection refused" in outcome["message"], outcome["message"]


def test_run_step_retries_a_dropped_file_system_connection(run_step_outcomes: dict[str, Any]) -> None:
    """The module promises that a dropped Redis *or file-system* connection is retried. A real
    write_offline step whose snapshot write raises ConnectionResetError must not fail terminally."""
    outcome = run_step_outcomes["offline_connection_reset"]
    assert "ConnectionResetError(transient=None)" in outcome["chain"]
    assert outcome["raised"] != FAIL, (
        f"a dropped connection while writing the offline snapshot fails the task without retries: "
        f"{' <- '.join(outcome['chain'])}: {outcome['message']}")


# -- end to end: dag.test() on real Airflow, the suite's Valkey, a temporary offline store ------------

E2E_PROJECT = "t_airflow_e2e"
DAILY = f"featurestore__{E2E_PROJECT}__daily"
FEATURES = ["profile:age", "profile:country", "doubled:age2"]
USERS = [1, 2, 3]
W1 = ("2026-01-01T00:00:00", "2026-01-02T00:00:00")
W2 = ("2026-01-02T00:00:00", "2026-01-03T00:00:00")
W3 = ("2026-01-03T00:00:00", "2026-01-04T00:00:00")


@dataclass
class Step:
    """One dag.test() run and the stores' state right after it."""

    answer: dict[str, Any]
    log: str
    online: dict[tuple[int, str], tuple[Any, str, datetime | None]]  # (user, feature) -> value, status, event time
    runs: list[Run]
    training: pl.DataFrame
    snapshots: dict[tuple[str, str, str], list[tuple[Any, ...]]]  # (view, start, end) -> rows of its newest run
    validations: list[dict[str, Any]]

    @property
    def tasks(self) -> dict[str, tuple[str, int]]:
        return {t: (i["state"], i["try_number"]) for t, i in self.answer["tasks"].items()}

    def windows(self, view: str, kind: str, status: str = "committed") -> list[tuple[str | None, str | None]]:
        return sorted((r.window_start, r.window_end) for r in self.runs
                      if r.view == view and r.kind == kind and r.status == status)


def online_state(store: FeatureStore) -> dict[tuple[int, str], tuple[Any, str, datetime | None]]:
    got = store.get_online_features(FEATURES, [{"user_id": u} for u in USERS]).to_dict(
        include_statuses=True, include_event_timestamps=True)
    return {(user, name): (got[name][i], str(got[f"{name}__status"][i]), got[f"{name}__event_timestamp"][i])
            for i, user in enumerate(USERS) for name in ("age", "country", "age2")}


def training_set(store: FeatureStore) -> pl.DataFrame:
    """Every user at the end of each of the first two days."""
    at = [ts(2026, 1, 1, 23), ts(2026, 1, 2, 23)]
    entity_df = pl.DataFrame({"user_id": [u for _ in at for u in USERS], "event_timestamp": [t for t in at for _ in USERS]},
                             schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")})
    return store.get_historical_features(entity_df, FEATURES).sort("event_timestamp", "user_id", maintain_order=True)


def snapshot_contents(runs: list[Run]) -> dict[tuple[str, str, str], list[tuple[Any, ...]]]:
    newest: dict[tuple[str, str, str], Run] = {}
    for run in runs:
        if run.kind == "offline" and run.status == "committed" and run.location and run.window_start and run.window_end:
            key = (run.view, run.window_start, run.window_end)
            if key not in newest or (run.commit_seq or 0) > (newest[key].commit_seq or 0):
                newest[key] = run
    out = {}
    for key, run in newest.items():
        frame = pl.read_parquet(Path(run.location) / "**" / "*.parquet", hive_partitioning=False)  # type: ignore[arg-type]
        columns = ["user_id", "__event_ts", *(c for c in ("age", "country", "age2") if c in frame.columns)]
        out[key] = sorted(frame.select(columns).iter_rows())
    return out


@pytest.fixture(scope="module")
def daily_runs(tmp_path_factory: pytest.TempPathFactory, airflow_home: Path, redis_server: Any) -> Iterator[dict[str, Step]]:
    """The daily DAG run by dag.test() in one Airflow process: the first and second days, the
    second day again, the first day again (a late backfill), then the third day (whose data fails
    profile's expectation)."""
    root = tmp_path_factory.mktemp("airflow_e2e")
    repo = write_feature_repo(root / "repo", online_config(redis_server, E2E_PROJECT))
    steps: dict[str, Step] = {}
    airflow = AirflowProcess(airflow_environ(airflow_home, repo), root / "airflow.log")
    try:
        with FeatureStore(repo) as store:
            for name, logical_date in [("first", "2026-01-02"), ("second", "2026-01-03"), ("rerun", "2026-01-03"),
                                       ("backfill", "2026-01-02"), ("failing", "2026-01-04")]:
                answer, log = airflow.request("test", repo=str(repo), dag_id=DAILY,
                                              logical_date=f"{logical_date}T00:00:00+00:00")
                runs = store.registry.runs(E2E_PROJECT)
                steps[name] = Step(answer, log, online_state(store), runs, training_set(store),
                                   snapshot_contents(runs), store.registry.validations(E2E_PROJECT))
        yield steps
    finally:
        airflow.close()


def profile_online(user: int, age: int, country: str, at: datetime) -> dict[tuple[int, str], tuple[Any, str, datetime]]:
    return {(user, "age"): (age, "PRESENT", at), (user, "country"): (country, "PRESENT", at),
            (user, "age2"): (age * 2, "PRESENT", at)}


MISSING = {(3, name): (None, "NOT_FOUND", None) for name in ("age", "country", "age2")}
ONLINE_AFTER_FIRST = {**profile_online(1, 30, "FR", ts(2026, 1, 1, 10)), **profile_online(2, 40, "DE", ts(2026, 1, 1, 11)),
                      **MISSING}
ONLINE_AFTER_SECOND = {**profile_online(1, 31, "FR", ts(2026, 1, 2, 9)), **profile_online(2, 40, "DE", ts(2026, 1, 1, 11)),
                       **profile_online(3, 50, "IT", ts(2026, 1, 2, 12))}
TRAINING = pl.DataFrame(
    {"user_id": [1, 2, 3, 1, 2, 3],
     "event_timestamp": [ts(2026, 1, 1, 23)] * 3 + [ts(2026, 1, 2, 23)] * 3,
     "age": [30, 40, None, 31, 40, 50], "country": ["FR", "DE", None, "FR", "DE", "IT"],
     "age2": [60, 80, None, 62, 80, 100]},
    schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "age": pl.Int64, "country": pl.String,
            "age2": pl.Int64},
)


def naive(*args: int) -> datetime:
    return datetime(*args)  # type: ignore[misc]


SNAPSHOTS = {
    ("profile", *W1): [(1, naive(2026, 1, 1, 10), 30, "FR"), (2, naive(2026, 1, 1, 11), 40, "DE")],
    ("doubled", *W1): [(1, naive(2026, 1, 1, 10), 60), (2, naive(2026, 1, 1, 11), 80)],
    ("archive", *W1): [(1, naive(2026, 1, 1, 10), "FR"), (2, naive(2026, 1, 1, 11), "DE")],
    ("profile", *W2): [(1, naive(2026, 1, 2, 9), 31, "FR"), (3, naive(2026, 1, 2, 12), 50, "IT")],
    ("doubled", *W2): [(1, naive(2026, 1, 2, 9), 62), (3, naive(2026, 1, 2, 12), 100)],
    ("archive", *W2): [(1, naive(2026, 1, 2, 9), "FR"), (3, naive(2026, 1, 2, 12), "IT")],
}
ALL_TASKS = {f"{view}.{step}" for view in ("profile", "doubled", "archive") for step in VIEWS[view]}


def assert_succeeded(step: Step, interval: tuple[str, str]) -> None:
    assert step.answer["state"] == "success", step.tasks
    assert step.answer["data_interval"] == [f"{interval[0]}+00:00", f"{interval[1]}+00:00"]
    assert step.tasks == {t: ("success", 1) for t in ALL_TASKS}
    assert [r for r in step.runs if r.status != "committed"] == []


@pytest.mark.slow
def test_two_consecutive_daily_runs(daily_runs: dict[str, Step]) -> None:
    first, second = daily_runs["first"], daily_runs["second"]

    # Logical date 2026-01-02 covers [2026-01-01, 2026-01-02): the first day's rows only, though
    # the source already holds the next days' (the third day's would fail validation).
    assert_succeeded(first, W1)
    assert first.online == ONLINE_AFTER_FIRST
    for view in ("profile", "doubled"):
        assert (set(first.windows(view, "offline")), first.windows(view, "online")) == ({W1}, [W1]), view
    assert (first.windows("archive", "offline"), first.windows("archive", "online")) == ([W1], [])
    assert first.snapshots == {k: v for k, v in SNAPSHOTS.items() if k[1:] == W1}
    assert_frame_equal(first.training, TRAINING)

    # The next day: its rows on top, user 2 (no row that day) keeps the first day's values.
    assert_succeeded(second, W2)
    assert second.online == ONLINE_AFTER_SECOND
    for view in ("profile", "doubled"):
        assert set(second.windows(view, "offline")) == {W1, W2}, view
        assert second.windows(view, "online") == [W1, W2], view
    assert (second.windows("archive", "offline"), second.windows("archive", "online")) == ([W1, W2], [])
    assert second.snapshots == SNAPSHOTS
    assert_frame_equal(second.training, TRAINING)


@pytest.mark.slow
def test_rerun_of_an_interval_changes_nothing(daily_runs: dict[str, Step]) -> None:
    second, rerun = daily_runs["second"], daily_runs["rerun"]
    assert_succeeded(rerun, W2)
    assert rerun.online == second.online == ONLINE_AFTER_SECOND  # values, statuses and event times
    assert_frame_equal(rerun.training, second.training)
    assert rerun.snapshots == second.snapshots == SNAPSHOTS  # the newest run of each window
    # New runs are recorded, with the same window.
    new = [r for r in rerun.runs if r.run_id not in {s.run_id for s in second.runs}]
    assert {(r.view, r.kind, r.window_start, r.window_end) for r in new} == {
        ("profile", "offline", *W2), ("profile", "online", *W2), ("doubled", "offline", *W2),
        ("doubled", "online", *W2), ("archive", "offline", *W2)}
    assert {(r.view, r.kind, r.rows) for r in new if r.kind == "online"} == {("profile", "online", 2),
                                                                             ("doubled", "online", 2)}


@pytest.mark.slow
def test_backfilling_an_earlier_interval_keeps_the_newer_values(daily_runs: dict[str, Step]) -> None:
    rerun, backfill = daily_runs["rerun"], daily_runs["backfill"]
    assert_succeeded(backfill, W1)
    # Online writes are newest-wins: the first day's values do not overwrite the second's.
    assert backfill.online == ONLINE_AFTER_SECOND
    assert_frame_equal(backfill.training, rerun.training)
    assert backfill.snapshots == SNAPSHOTS
    new = [r for r in backfill.runs if r.run_id not in {s.run_id for s in rerun.runs}]
    assert {(r.view, r.kind, r.window_start, r.window_end) for r in new} == {
        ("profile", "offline", *W1), ("profile", "online", *W1), ("doubled", "offline", *W1),
        ("doubled", "online", *W1), ("archive", "offline", *W1)}


@pytest.mark.slow
def test_failing_validation_fails_the_task_and_writes_nothing(daily_runs: dict[str, Step]) -> None:
    before, failing = daily_runs["backfill"], daily_runs["failing"]

    assert failing.answer["state"] == "failed"
    assert failing.answer["data_interval"] == [f"{W3[0]}+00:00", f"{W3[1]}+00:00"]
    # Failed at once, on the first try though the task has retries; nothing after it ran.
    assert failing.answer["tasks"]["profile.validate"]["max_tries"] >= 1
    assert failing.tasks == {
        "profile.transform": ("success", 1), "profile.validate": ("failed", 1),
        **{f"profile.{s}": ("upstream_failed", 0) for s in ("write_offline", "materialize_online", "statistics")},
        **{f"doubled.{s}": ("upstream_failed", 0) for s in VIEWS["doubled"]},
        # The view that does not read profile is not held back.
        **{f"archive.{s}": ("success", 1) for s in VIEWS["archive"]},
    }
    # The project's message, with view, step and interval.
    assert (f"AirflowFailException: profile.validate [2026-01-03 00:00 .. 2026-01-04 00:00): feature view "
            f"'profile': 1 expectation(s) on 2 rows, 1 failed (policy fail)\n  FAIL  {BETWEEN}: 1 of 2 rows (50.0%); "
            f"e.g. -5") in failing.log

    # Nothing written for profile or what reads it, in either store.
    new = [r for r in failing.runs if r.run_id not in {b.run_id for b in before.runs}]
    assert {(r.view, r.kind, r.window_start, r.window_end, r.status) for r in new} == {
        ("archive", "offline", *W3, "committed")}
    assert failing.online == before.online == ONLINE_AFTER_SECOND
    assert_frame_equal(failing.training, before.training)
    assert {k: v for k, v in failing.snapshots.items() if k[0] != "archive"} == {
        k: v for k, v in SNAPSHOTS.items() if k[0] != "archive"}
    # The outcome is recorded.
    latest = failing.validations[0]
    assert (latest["subject"], latest["success"], latest["stage"]) == ("feature view 'profile'", False,
                                                                       "airflow validate")
    assert BETWEEN in json.dumps(latest)
