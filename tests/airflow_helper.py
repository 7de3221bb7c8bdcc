"""Airflow in a process of its own, for tests/test_airflow.py.

Airflow reads its configuration (``AIRFLOW_HOME``, ``AIRFLOW__CORE__DAGS_FOLDER``...) when it is
imported, so the tests never import it themselves: they run this script with an environment of
its own and read JSON answers. Every mode prints exactly one JSON document per answer on stdout;
Airflow's own logging goes to stderr.

    python tests/airflow_helper.py parse      import the DAG file once, in this fresh process: the
                                              DAG ids, which heavy modules got imported and which
                                              files under $FEATURESTORE_REPO were opened
    python tests/airflow_helper.py dagbag     DagBag(dag_folder=$AIRFLOW__CORE__DAGS_FOLDER): import
                                              errors and every DAG's tasks and edges
    python tests/airflow_helper.py run-step REPO REPO_WITH_REDIS_DOWN
                                              run_step's error mapping (no Airflow run)
    python tests/airflow_helper.py serve      JSON commands on stdin, one answer line each, in one
                                              long-lived process (no restart between commands):
                                              {"cmd": "dagbag", "repo": PATH | null}
                                              {"cmd": "test", "repo": PATH, "dag_id": ID, "logical_date": ISO}
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ENV = "FEATURESTORE_REPO"
HEAVY = ("duckdb", "polars", "pyarrow", "great_expectations", "redis")


def _dags_folder() -> str:
    return os.environ["AIRFLOW__CORE__DAGS_FOLDER"]


def _set_repo(repo: str | None) -> None:
    if repo is None:
        os.environ.pop(REPO_ENV, None)
    else:
        os.environ[REPO_ENV] = repo


def parse() -> dict[str, Any]:
    """Import the DAG file as the DAG processor does, watching what it imports and opens."""
    import runpy

    repo = Path(os.environ[REPO_ENV]).resolve()
    opened: list[str] = []

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if event in ("open", "sqlite3.connect") and args and isinstance(args[0], str | bytes | os.PathLike):
            path = Path(os.fsdecode(args[0]))
            if path.is_absolute() and path.resolve().is_relative_to(repo):
                opened.append(path.resolve().relative_to(repo).as_posix())

    before = {m for m in HEAVY if m in sys.modules}
    sys.addaudithook(audit)
    namespace = runpy.run_path(str(Path(_dags_folder()) / "featurestore_dags.py"))
    dag_ids = sorted(name for name, value in namespace.items() if type(value).__name__ == "DAG")
    return {"dag_ids": dag_ids, "heavy_before": sorted(before),
            "heavy_imported": sorted(m for m in HEAVY if m in sys.modules), "opened": sorted(set(opened))}


def dagbag() -> dict[str, Any]:
    """Every DAG file of the dags folder through Airflow's DagBag, with the DAGs' structure."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=_dags_folder())
    probe = datetime(2026, 1, 2, tzinfo=UTC)
    dags = {}
    for dag_id, dag in bag.dags.items():
        interval = dag.timetable.infer_manual_data_interval(run_after=probe)
        dags[dag_id] = {
            "fileloc": dag.fileloc,
            "description": dag.description,
            "interval_for_2026_01_02": [interval.start.isoformat(), interval.end.isoformat()],
            "tasks": {
                task_id: {
                    "upstream": sorted(task.upstream_task_ids),
                    "downstream": sorted(task.downstream_task_ids),
                    "group": task.task_group.group_id if task.task_group is not None else None,
                    "retries": task.retries,
                    "op_kwargs": {k: v for k, v in getattr(task, "op_kwargs", {}).items()},
                }
                for task_id, task in dag.task_dict.items()
            },
        }
    return {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dags": dags}


def _state(value: Any) -> Any:
    return getattr(value, "value", value)


def dag_test(repo: str, dag_id: str, logical_date: str) -> dict[str, Any]:
    """One ``dag.test()`` run: the DAG run's state and interval, and each task instance's state and try."""
    from airflow.dag_processing.dagbag import DagBag

    _set_repo(repo)
    bag = DagBag(dag_folder=_dags_folder())
    if dag_id not in bag.dags:
        return {"error": f"no DAG {dag_id!r}; DAGs: {sorted(bag.dags)}; import errors: {bag.import_errors}"}
    run = bag.dags[dag_id].test(logical_date=datetime.fromisoformat(logical_date))
    start, end = run.data_interval_start, run.data_interval_end
    return {
        "state": _state(run.state),
        "run_id": run.run_id,
        "logical_date": run.logical_date.isoformat(),
        "data_interval": [None if start is None else start.isoformat(), None if end is None else end.isoformat()],
        "tasks": {ti.task_id: {"state": _state(ti.state), "try_number": ti.try_number, "max_tries": ti.max_tries}
                  for ti in run.get_task_instances()},
    }


def serve() -> None:
    """Answer JSON commands from stdin, one line each, until stdin closes."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # from here on, anything printed (Airflow, the tasks) goes to the log
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        try:
            name = command.pop("cmd")
            if name == "dagbag":
                _set_repo(command.get("repo"))
                answer = dagbag()
            elif name == "test":
                answer = dag_test(**command)
            else:
                answer = {"error": f"unknown command {name!r}"}
        except Exception:
            answer = {"error": traceback.format_exc()}
        answers.write(json.dumps(answer, default=str) + "\n")
        answers.flush()


def _outcome(call: Any) -> dict[str, Any]:
    """What a call raised: its type, message, cause, and the exception object itself (not in JSON)."""
    try:
        value = call()
    except BaseException as exc:
        cause = exc.__cause__
        return {"raised": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": str(exc),
                "cause": None if cause is None else f"{type(cause).__module__}.{type(cause).__qualname__}",
                "transient": getattr(exc, "transient", None), "_exc": exc}
    return {"raised": None, "returned": value}


def run_step_checks(repo: str, repo_offline_redis: str) -> dict[str, Any]:
    """``run_step`` with each step's work replaced by a function that raises a chosen error; plus
    real steps: ``materialize_online`` of a repo whose Redis is down (``repo_offline_redis``), and
    ``write_offline`` whose file-system write drops (a transient ``ConnectionResetError``)."""
    from unittest import mock

    import pendulum

    from featurestore.errors import DefinitionError, OnlineStoreError, ValidationError
    from featurestore.offline.store import OfflineStore
    from featurestore.orchestration import airflow as orchestration

    start, end = pendulum.datetime(2026, 1, 2, tz="UTC"), pendulum.datetime(2026, 1, 3, tz="UTC")
    interval = {"data_interval_start": start, "data_interval_end": end}
    transient = OnlineStoreError("cannot connect to the online store 127.0.0.1:1: Connection refused", transient=True)
    errors: dict[str, BaseException] = {
        "validation": ValidationError(None, "feature view 'profile': 1 expectation(s) on 2 rows, 1 failed (policy fail)\n"
                                            "  FAIL  between(age, min=0, max=120): 1 of 2 rows (50.0%); e.g. -5"),
        "definition": DefinitionError("unknown column 'agee'", file="defs.py", line=7, obj="feature view 'profile'"),
        "online_terminal": OnlineStoreError("WRONGPASS invalid username-password pair", transient=False),
        "online_transient": transient,
        "unexpected": KeyError("surprise"),
    }
    out: dict[str, Any] = {}
    for name, error in errors.items():
        def fail(*args: Any, error: BaseException = error) -> Any:
            raise error

        with mock.patch.dict(orchestration._STEPS, {"materialize_online": fail}):
            result = _outcome(lambda: orchestration.run_step(repo, "profile", "materialize_online", **interval))
        result["same_object"] = result.pop("_exc", None) is error
        out[name] = result

    def succeed(repo_path: Path, view: str, start: datetime, end: datetime) -> dict[str, Any]:
        return {"view": view, "repo": str(repo_path), "start": start.isoformat(), "end": end.isoformat()}

    with mock.patch.dict(orchestration._STEPS, {"transform": succeed}):
        ok = _outcome(lambda: orchestration.run_step(repo, "profile", "transform", **interval))
        ok.pop("_exc", None)
        out["success"] = ok
        for name, context in {
            "no_interval": {"data_interval_start": None, "data_interval_end": None},
            "empty_interval": {"data_interval_start": start, "data_interval_end": start},
        }.items():
            result = _outcome(lambda context=context: orchestration.run_step(repo, "profile", "transform", **context))
            result.pop("_exc", None)
            out[name] = result

    # A real materialize_online step whose Redis refuses connections.
    result = _outcome(lambda: orchestration.run_step(repo_offline_redis, "profile", "materialize_online", **interval))
    result["chain"] = _chain(result.pop("_exc", None))
    out["redis_down"] = result

    # A real write_offline step on the repo, whose snapshot write loses its file-system connection.
    dropped = ConnectionResetError(104, "Connection reset by peer")

    def drop(*args: Any, **kwargs: Any) -> int:
        raise dropped

    with mock.patch.object(OfflineStore, "_write", drop):
        result = _outcome(lambda: orchestration.run_step(repo, "profile", "write_offline", **interval))
    exc = result.pop("_exc", None)
    result["same_object"] = exc is dropped
    result["chain"] = _chain(exc)
    out["offline_connection_reset"] = result
    return out


def _chain(exc: BaseException | None) -> list[str]:
    """An exception and its causes, outermost first, each with its ``transient`` flag."""
    chain = []
    while exc is not None:
        chain.append(f"{type(exc).__qualname__}(transient={getattr(exc, 'transient', None)})")
        exc = exc.__cause__
    return chain


def main() -> None:
    mode = sys.argv[1]
    if mode == "serve":
        serve()
        return
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    if mode == "parse":
        answer = parse()
    elif mode == "dagbag":
        answer = dagbag()
    elif mode == "run-step":
        answer = run_step_checks(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    answers.write(json.dumps(answer, default=str) + "\n")
    answers.close()


if __name__ == "__main__":
    main()
