"""Statistics of what was written and drift against a reference, for a project's views.

Every materialization run and saved training set records column statistics in the registry
(``record``). ``monitor`` compares a view's current statistics (its last run, or a window) with a
reference (a saved training set, or a baseline window), writes the HTML report and raises a drift
alert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.monitoring import MonitoringError

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.definitions import FeatureView
    from featurestore.monitoring.drift import DriftReport
    from featurestore.monitoring.stats import ColumnStats
    from featurestore.registry import Registry
    from featurestore.store import FeatureStore


def record(registry: Registry, project: str, subject: str, run_id: str | None, rows: pa.Table | Any,
           columns: list[str]) -> dict[str, ColumnStats]:
    """Profile ``columns`` of ``rows`` (Arrow or Polars) and keep the statistics in the registry."""
    from featurestore.monitoring.stats import column_stats, stats_to_dict

    present = [c for c in columns if c in rows.column_names] if hasattr(rows, "column_names") else columns
    stats = column_stats(rows, present)
    registry.record_statistics(project, subject, run_id, stats_to_dict(stats))
    return stats


def stored(registry: Registry, project: str, subject: str, run_id: str | None = None) -> dict[str, ColumnStats] | None:
    from featurestore.monitoring.stats import stats_from_dict

    found = registry.statistics(project, subject, run_id)
    return None if found is None else stats_from_dict(found["columns"])


@dataclass(frozen=True)
class Monitoring:
    """One comparison: the drift report, both sides' statistics, where the HTML report went."""

    view: str
    report: DriftReport
    reference_label: str
    current_label: str
    html_path: Path

    @property
    def drifted(self) -> list[str]:
        return list(self.report.drifted)

    def summary(self) -> str:
        head = (f"Drift of feature view {self.view!r}: {self.current_label} against {self.reference_label}; "
                f"{len(self.drifted)} of {len(self.report.features)} feature(s) drifted")
        return "\n".join([head, self.report.summary(), f"Report: {self.html_path}"])


def monitor(
    store: FeatureStore, view_name: str, *, training_set: str | None = None,
    baseline: tuple[Any, Any] | None = None, current: tuple[Any, Any] | None = None,
    html_path: Path | None = None,
) -> Monitoring:
    """Compare a view's current statistics with a reference and write the HTML report.

    Reference: ``training_set`` (a saved training set's statistics) or ``baseline`` (a window of the
    view's rows). Current: ``current`` (a window) or, by default, the view's last recorded run.
    """
    from featurestore.monitoring.drift import compare
    from featurestore.monitoring.report import html_report

    if (training_set is None) == (baseline is None):
        raise MonitoringError("pass a reference: a saved training set or a baseline window (not both)")
    view = store.get_feature_view(view_name)
    features = list(view.feature_names)
    if training_set is not None:
        record_ = store.get_training_set(training_set)
        ref_all = stored(store.registry, store.project, f"training_set:{training_set}")
        if ref_all is None:
            raise MonitoringError(f"training set {training_set!r} has no recorded statistics; save it again")
        prefix = f"{view.name}__" if record_.get("full_feature_names") else ""
        reference = {f: ref_all[prefix + f] for f in features if prefix + f in ref_all}
        if not reference:
            raise MonitoringError(f"training set {training_set!r} holds none of {view_name!r}'s features {features}")
        reference_label = f"training set {training_set!r} ({record_['rows']:,} rows)"
    else:
        assert baseline is not None
        reference = window_stats(store, view, *baseline)
        reference_label = f"baseline {_window(*baseline)}"
    if current is not None:
        now = window_stats(store, view, *current)
        current_label = f"window {_window(*current)}"
    else:
        found = store.registry.statistics(store.project, view.name)
        if found is None:
            raise MonitoringError(f"feature view {view_name!r} has no recorded run statistics yet: materialize it "
                                  "or pass a current window")
        from featurestore.monitoring.stats import stats_from_dict

        now = stats_from_dict(found["columns"])
        current_label = f"run {found['run_id']} ({found['created_at'][:19]})"
    shared = {f: reference[f] for f in features if f in reference and f in now}
    thresholds = {f: t for f, t in view.drift_thresholds.items() if f in shared}
    report = compare(shared, {f: now[f] for f in shared}, thresholds)
    generated = datetime.now(UTC)
    path = html_path or (store.repo_path / "data" / "reports" / f"drift-{view.name}-{generated:%Y%m%dT%H%M%S%f}.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_report(report, shared, {f: now[f] for f in shared}, f"Drift of {view.name}",
                                reference_label=reference_label, current_label=current_label,
                                generated_at=generated))
    result = Monitoring(view.name, report, reference_label, current_label, path)
    if result.drifted:
        _alert(store, result)
    return result


def window_stats(store: FeatureStore, view: FeatureView, start: Any, end: Any) -> dict[str, ColumnStats]:
    """Statistics of the rows a snapshot of ``[start, end)`` would hold."""
    from featurestore.monitoring.stats import column_stats

    if view.aggregations:
        raise MonitoringError(f"feature view {view.name!r} aggregates: compare its runs or a training set, "
                              "whose statistics hold the aggregates")
    rows, _, _ = store.window_rows(view, start, end)
    if rows.num_rows == 0:
        raise MonitoringError(f"feature view {view.name!r} has no rows in {_window(start, end)}")
    return column_stats(rows, list(view.feature_names))


def _alert(store: FeatureStore, result: Monitoring) -> None:
    from featurestore.alerts import Alert, alerter_from_config

    worst = result.report.ordered()[0]
    message = (f"{len(result.drifted)} feature(s) of {result.view} drifted ({result.current_label} against "
               f"{result.reference_label}); worst: {worst.name} ({', '.join(_names(worst.tripped))})")
    alerter_from_config(store.config).send(Alert(
        kind="drift", severity="warning", project=store.project, subject=f"feature view '{result.view}'",
        message=" ".join(message.split()), details=json.loads(json.dumps(result.report.to_dict(), default=str)),
        report=str(result.html_path),
    ))


def _names(tripped: Any) -> list[str]:
    return [tripped] if isinstance(tripped, str) else [str(t) for t in tripped or ()]


def _window(start: Any, end: Any) -> str:
    return f"[{start}, {end})"
