"""Saved training sets: what the registry keeps of a training set a model was trained on, and the
imputation values learned from it, which serving reuses unchanged."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from featurestore.definitions import FeatureService, FeatureView
from featurestore.errors import RetrievalError, UnknownObjectError
from featurestore.resolve import FeatureRequests

if TYPE_CHECKING:
    import polars as pl

    from featurestore.registry import Registry


class TrainingSets:
    """The saved training sets of one project, with a short-lived cache of imputation values for
    the serving path (one registry read per service and second at most)."""

    CACHE_SECONDS = 1.0

    def __init__(self, registry: Registry, project: str) -> None:
        self.registry = registry
        self.project = project
        self._cache: dict[tuple[str, str | None], tuple[dict[str, Any], float]] = {}

    def get(self, name: str) -> dict[str, Any]:
        record = self.registry.dataset(self.project, name)
        if record is None:
            known = [d["name"] for d in self.registry.datasets(self.project)]
            raise UnknownObjectError(f"unknown training set {name!r}; saved: {known or 'none'}")
        return record

    def list(self) -> list[dict[str, Any]]:
        return self.registry.datasets(self.project)

    def imputation(self, service: FeatureService, training_set: str | None, *, cached: bool = False) -> dict[str, Any]:
        """The imputation values of ``training_set`` (default: the service's latest saved set;
        none saved: empty, so only constants fill)."""
        key = (service.name, training_set)
        now = time.monotonic()
        hit = self._cache.get(key)
        if cached and hit is not None and now - hit[1] <= self.CACHE_SECONDS:
            return hit[0]
        if training_set is not None:
            record = self.get(training_set)
            if record.get("feature_service") != service.name:
                raise RetrievalError(
                    f"training set {training_set!r} was built with {record.get('feature_service')!r}, not the "
                    f"feature service {service.name!r}: its imputation values do not apply"
                )
        else:
            saved = [d for d in self.list() if d.get("feature_service") == service.name]
            record = saved[-1] if saved else {}
        fitted: dict[str, Any] = record.get("imputation", {})
        self._cache[key] = (fitted, now)
        return fitted

    def save(
        self, name: str, service: FeatureService, frame: pl.DataFrame, requests: FeatureRequests,
        views: dict[str, FeatureView], *, timestamp_column: str, full_feature_names: bool, overwrite: bool,
    ) -> pl.DataFrame:
        """Learn the service's imputation values from ``frame``, record the set, return it filled."""
        from featurestore.imputation import fill_frame, fit, targets

        found = targets(service, requests)
        fitted = fit(frame, found)
        self.registry.save_dataset(self.project, name, {
            "name": name, "feature_service": service.name, "full_feature_names": full_feature_names,
            "timestamp_column": timestamp_column, "rows": frame.height, "columns": frame.columns,
            "imputation": fitted,
            "view_fingerprints": {r.view.name: views[r.view.name].data_fingerprint for r in requests},
        }, overwrite=overwrite)
        self._cache.clear()
        from featurestore.monitoring.monitor import record

        columns = [o for r in [*requests, *requests.on_demand] for o in r.output_names if o not in requests.hidden]
        record(self.registry, self.project, f"training_set:{name}", None, frame, columns)
        return fill_frame(frame, found, fitted)
