"""Airflow DAGs built from a repo's applied registry: one DAG per schedule.

``build_dags(repo)`` reads only the registry (a SQLite file; no data, no DuckDB, no Great
Expectations), so parsing stays cheap and a newly applied view's DAG appears at the next parse.
Each view with a ``schedule`` gets a task group in the DAG of its schedule::

    <view>.transform -> <view>.validate -> <view>.write_offline -> <view>.materialize_online -> <view>.statistics

and views that read other views of the same DAG run after them. Every task handles exactly its
run's data interval ``[data_interval_start, data_interval_end)``: snapshots of a window supersede
older ones and online writes are newest-wins, so retries, catch-up and ``airflow backfill`` give
the same state as one large run. Transient errors (a dropped Redis or file-system connection)
are raised as they are, for Airflow to retry; terminal ones (a failed validation, a bad
definition) fail the task at once with the project's message.

Why one DAG per schedule, not per view: views that read each other usually share a schedule, and
in one DAG their order is an edge Airflow shows and enforces; a view on another schedule reads its
upstream's sources itself, so no cross-DAG wait is needed.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ENV = "FEATURESTORE_REPO"
TASKS = ("transform", "validate", "write_offline", "materialize_online", "statistics")
DEFAULT_RETRIES = 2


def build_dags(repo: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The DAGs of a repo (``$FEATURESTORE_REPO`` by default), by dag id."""
    from featurestore.config import load_config
    from featurestore.registry import Registry

    path = repo if repo is not None else os.environ.get(REPO_ENV)
    if not path:
        raise RuntimeError(f"set {REPO_ENV} to the feature repo whose DAGs Airflow should run")
    config = load_config(path)
    objects = Registry(config.registry_path).list_objects(config.project, "feature_view")
    by_schedule: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        schedule = obj.spec.get("schedule")
        if schedule is not None:
            by_schedule.setdefault(_schedule_key(schedule), []).append(obj.spec)
    return {
        dag_id(config.project, views[0]["schedule"]): _dag(config.project, str(config.repo_path), views)
        for views in by_schedule.values()
    }


def dag_id(project: str, schedule: str | dict[str, float]) -> str:
    """``featurestore__<project>__daily``, ``..__every_3600s`` or ``..__cron_<hash>``."""
    if isinstance(schedule, dict):
        slug = f"every_{int(schedule['seconds'])}s"
    elif schedule.startswith("@"):
        slug = schedule[1:]
    else:
        slug = "cron_" + hashlib.sha256(schedule.encode()).hexdigest()[:8]
    return f"featurestore__{project}__{slug}"


def _schedule_key(schedule: str | dict[str, float]) -> str:
    return schedule if isinstance(schedule, str) else f"every {schedule['seconds']}"


def _timetable(schedule: str | dict[str, float]) -> Any:
    """A data-interval timetable: each run covers [previous tick, tick) (Airflow 3's plain cron
    schedules give runs without an interval)."""
    from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable

    if isinstance(schedule, dict):
        return DeltaDataIntervalTimetable(timedelta(seconds=schedule["seconds"]))
    cron = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *",
            "@quarterly": "0 0 1 */3 *", "@yearly": "0 0 1 1 *"}.get(schedule, schedule)
    return CronDataIntervalTimetable(cron, timezone="UTC")


def _dag(project: str, repo: str, views: list[dict[str, Any]]) -> Any:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, TaskGroup

    schedule = views[0]["schedule"]
    names = sorted(v["name"] for v in views)
    dag = DAG(
        dag_id=dag_id(project, schedule),
        schedule=_timetable(schedule),
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["featurestore", project],
        description=f"featurestore project {project!r}: {', '.join(names)} ({_schedule_key(schedule)})",
        default_args={"retries": DEFAULT_RETRIES, "retry_delay": timedelta(seconds=30)},
        doc_md=__doc__,
    )
    groups: dict[str, tuple[Any, Any]] = {}
    with dag:
        for spec in sorted(views, key=lambda v: v["name"]):
            name = spec["name"]
            with TaskGroup(group_id=name) as group:
                steps = [
                    PythonOperator(task_id=step, python_callable=run_step, op_kwargs={"repo": repo, "view": name,
                                                                                        "step": step})
                    for step in TASKS if step != "materialize_online" or spec.get("online", True)
                ]
                for before, after in itertools.pairwise(steps):
                    before >> after
            groups[name] = (group, steps)
        for spec in views:
            for upstream in _upstream(spec):
                if upstream in groups:  # same schedule: the upstream's writes first
                    groups[upstream][1][-1] >> groups[spec["name"]][1][0]
    return dag


def _upstream(spec: dict[str, Any]) -> list[str]:
    inputs = spec.get("sources") or {"source": spec.get("source") or {}}
    return [s["name"] for s in inputs.values() if isinstance(s, dict) and s.get("type") == "feature_view"]


# -- what each task does ---------------------------------------------------------------------------


def run_step(repo: str, view: str, step: str, **context: Any) -> dict[str, Any]:
    """Run one step of one view for the task's data interval. Returns what it did (an XCom)."""
    start, end = context["data_interval_start"], context["data_interval_end"]
    if start is None or end is None or start >= end:
        raise _terminal(f"{view}.{step}: the run has no data interval ({start} .. {end}); use a schedule that "
                        "gives one")
    try:
        return _STEPS[step](Path(repo), view, start, end)
    except Exception as exc:
        from featurestore.errors import FeatureStoreError

        if isinstance(exc, FeatureStoreError) and not exc.transient:
            raise _terminal(f"{view}.{step} [{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}): {exc}") from exc
        raise  # transient (a connection dropped) or unexpected: Airflow retries


def _terminal(message: str) -> Exception:
    """An error that fails the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def _transform(repo: Path, view: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Compile the view and count its rows in the interval: a bad definition fails here."""
    from featurestore import FeatureStore

    with FeatureStore(repo) as store:
        rows, _, _ = store.window_rows(store.get_feature_view(view), start, end)
        return {"rows": rows.num_rows}


def _validate(repo: Path, view: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Check the interval's rows before anything is written; only the ``fail`` policy stops here
    (``warn`` and ``quarantine`` are applied by the writes)."""
    from featurestore import FeatureStore
    from featurestore.errors import ValidationError

    with FeatureStore(repo) as store:
        definition = store.get_feature_view(view)
        sources = [s for s in definition.inputs.values() if not isinstance(s, str) and s.expectations]
        if not definition.expectations and not sources:
            return {"expectations": 0}
        results = store.validate(view, start, end)
        failed = [r for r in results if not r.success and r.policy == "fail"]
        if failed:
            store.checker.finish(view, None, failed[0], {**failed[0].to_dict(), "stage": "airflow validate"})
            raise ValidationError(failed[0], "\n".join(r.explain() for r in failed))
        return {"expectations": sum(len(r.results) for r in results), "passed": all(r.success for r in results)}


def _write_offline(repo: Path, view: str, start: datetime, end: datetime) -> dict[str, Any]:
    from featurestore import FeatureStore

    with FeatureStore(repo) as store:
        (run,) = store.materialize_offline(start, end, views=[view])
        return {"run_id": run.run_id, "rows": run.rows}


def _materialize_online(repo: Path, view: str, start: datetime, end: datetime) -> dict[str, Any]:
    from featurestore import FeatureStore

    with FeatureStore(repo) as store:
        # write_offline has just snapshotted this window: the online values are read from it.
        runs = store.materialize(start, end, views=[view], write_snapshot=False)
        return {"run_id": runs[0].run_id, "rows": runs[0].rows} if runs else {"rows": 0}


def _statistics(repo: Path, view: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Drift of this interval against the one before it (statistics were recorded by the writes);
    drift raises an alert, it does not fail the task."""
    from featurestore import FeatureStore
    from featurestore.monitoring import MonitoringError
    from featurestore.monitoring.monitor import monitor

    with FeatureStore(repo) as store:
        previous = (start - (end - start), start)
        try:
            result = monitor(store, view, baseline=previous, current=(start, end))
        except MonitoringError as exc:  # no rows before, an aggregating view...: nothing to compare
            return {"drift": None, "note": str(exc)}
        return {"drifted": result.drifted, "report": str(result.html_path)}


_STEPS: dict[str, Callable[[Path, str, datetime, datetime], dict[str, Any]]] = {
    "transform": _transform, "validate": _validate, "write_offline": _write_offline,
    "materialize_online": _materialize_online, "statistics": _statistics,
}

