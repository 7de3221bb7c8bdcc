"""Filling missing feature values the way a feature service declares it.

``fit`` learns one value per feature from a training set (mean, median or the most frequent value;
a constant needs nothing); the values are stored with the saved training set. ``fill_frame`` and
``fill_response`` fill training sets and online lookups with exactly those values, so serving sees
what training saw. An online value filled this way has the status ``IMPUTED``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featurestore.definitions import FeatureService, Impute
from featurestore.errors import RetrievalError
from featurestore.resolve import FeatureRequests

if TYPE_CHECKING:
    import polars as pl

    from featurestore.online.retrieval import OnlineResponse


@dataclass(frozen=True)
class Target:
    """One feature to fill: its ref, its column in the result, and how."""

    ref: str
    column: str
    impute: Impute
    dtype: Any


def targets(service: FeatureService, requests: FeatureRequests) -> list[Target]:
    """The service's imputed features, located in the columns ``requests`` produce."""
    columns: dict[str, tuple[str, Any]] = {}
    for req in [*requests, *requests.on_demand]:
        types = {f.name: f.dtype for f in req.view.features}
        for feat, out in zip(req.features, req.output_names, strict=True):
            columns.setdefault(f"{req.view.name}:{feat}", (out, types[feat]))
    found = []
    for ref, how in service.imputation.items():
        if ref not in columns:
            raise RetrievalError(f"feature service {service.name!r} imputes {ref!r}, which it does not serve")
        column, dtype = columns[ref]
        problem = how.problem(ref, dtype)
        if problem is not None:
            raise RetrievalError(f"feature service {service.name!r}: {problem}")
        found.append(Target(ref, column, how, dtype))
    return found


def fit(frame: pl.DataFrame, found: list[Target]) -> dict[str, dict[str, Any]]:
    """The value each target is filled with, learned from ``frame`` (a training set)."""

    fitted: dict[str, dict[str, Any]] = {}
    for t in found:
        column = frame.get_column(t.column).drop_nulls()
        if t.impute.strategy == "constant":
            value = t.impute.value
        elif column.is_empty():
            raise RetrievalError(f"cannot learn the {t.impute.strategy} of {t.ref!r}: every value in the training "
                                 "set is missing; use Impute.constant(...)")
        elif t.impute.strategy == "mean":
            value = column.mean()
        elif t.impute.strategy == "median":
            value = column.median()
        else:  # mode: the most frequent; the smallest among equally frequent ones
            counts = column.value_counts(name="__n").sort(["__n", t.column], descending=[True, False])
            value = counts.get_column(t.column)[0]
        if isinstance(value, datetime):  # stored as JSON: ISO text, read back by _value
            value = value.isoformat()
        fitted[t.ref] = {"strategy": t.impute.strategy, "value": value, "rows": frame.height,
                         "missing": int(frame.get_column(t.column).null_count())}
    return fitted


def fill_frame(frame: pl.DataFrame, found: list[Target], fitted: dict[str, dict[str, Any]]) -> pl.DataFrame:
    import polars as pl

    from featurestore.online.retrieval import polars_type

    fills = [
        pl.col(t.column).fill_null(pl.lit(_as_dtype(_value(t, fitted), t.dtype)).cast(polars_type(t.dtype)))
        for t in found if _value(t, fitted) is not None
    ]
    return frame.with_columns(fills) if fills else frame


def fill_response(response: OnlineResponse, found: list[Target], fitted: dict[str, dict[str, Any]]) -> OnlineResponse:
    from featurestore.online.retrieval import FieldStatus

    for t in found:
        value = _value(t, fitted)
        if value is None or t.column not in response.values:
            continue
        value = _as_dtype(value, t.dtype)
        values, statuses = response.values[t.column], list(response.statuses[t.column])
        for i, v in enumerate(values):
            if v is None:
                values[i] = value
                statuses[i] = FieldStatus.IMPUTED
        response.statuses[t.column] = statuses  # views' features share status lists: copy, then set
    return response


def _value(t: Target, fitted: dict[str, dict[str, Any]]) -> Any:
    if t.impute.strategy == "constant":
        return t.impute.value
    stored = fitted.get(t.ref)
    value = None if stored is None else stored["value"]
    if isinstance(value, str) and t.dtype.name == "UnixTimestamp":
        value = datetime.fromisoformat(value)
    return value


def _as_dtype(value: Any, dtype: Any) -> Any:
    if dtype.name in ("Int32", "Int64") and isinstance(value, float):
        return round(value)
    if dtype.name in ("Float32", "Float64") and isinstance(value, int | float):
        return float(value)
    return value
