"""Monitoring: column statistics, drift against a reference, and reports a person can read.

* ``stats.column_stats`` profiles a frame into one small, JSON-serialisable ``ColumnStats`` per
  column; these are what the registry stores for materialization runs and saved training sets.
* ``drift.compare`` compares two profiles (no raw data needed) and returns a ``DriftReport``.
* ``report.html_report`` renders a report as one self-contained HTML page with inline SVG plots.

Polars and NumPy are imported inside functions, so importing this package stays cheap::

    from featurestore.monitoring import column_stats, compare, html_report

    report = compare(column_stats(training_frame), column_stats(last_week))
    print(report.summary())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featurestore.errors import FeatureStoreError

if TYPE_CHECKING:
    from featurestore.monitoring.drift import DriftReport, FeatureDrift, Metric, Threshold, compare
    from featurestore.monitoring.report import html_report
    from featurestore.monitoring.stats import ColumnStats, Histogram, column_stats


class MonitoringError(FeatureStoreError):
    """Statistics cannot be computed or compared: an unknown column, malformed stored statistics,
    or an invalid drift threshold."""


_LAZY = {
    "ColumnStats": "featurestore.monitoring.stats",
    "Histogram": "featurestore.monitoring.stats",
    "column_stats": "featurestore.monitoring.stats",
    "DriftReport": "featurestore.monitoring.drift",
    "FeatureDrift": "featurestore.monitoring.drift",
    "Metric": "featurestore.monitoring.drift",
    "Threshold": "featurestore.monitoring.drift",
    "compare": "featurestore.monitoring.drift",
    "html_report": "featurestore.monitoring.report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'featurestore.monitoring' has no attribute {name!r}")


__all__ = [
    "ColumnStats",
    "DriftReport",
    "FeatureDrift",
    "Histogram",
    "Metric",
    "MonitoringError",
    "Threshold",
    "column_stats",
    "compare",
    "html_report",
]
