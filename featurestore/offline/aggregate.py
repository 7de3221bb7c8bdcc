"""Windowed aggregations as DuckDB expressions, shared by training sets and materialization.

For an instant ``t`` an aggregation covers the view's events with ``t - window < event_ts <= t``.
Training sets compute it for every entity row (a range join on the keys, one group per row);
online materialization computes it for every entity at the run's end instant, so an online value
equals the training-set value at that instant. Rows are compared by the tie struct (event,
created, ingestion order) so ``last`` is deterministic.
"""

from __future__ import annotations

from datetime import timedelta

from sqlglot import exp

from featurestore.definitions import FeatureView
from featurestore.definitions.transformation import Aggregation
from featurestore.offline.sources import EVENT_TS
from featurestore.offline.store import TIE_KEY

_FUNCTIONS = {
    "count": "count", "sum": "sum", "mean": "avg", "min": "min", "max": "max", "stddev": "stddev_samp",
    "approx_count_distinct": "approx_count_distinct",
}


def interval(delta: timedelta) -> exp.Interval:
    micros = delta // timedelta(microseconds=1)
    return exp.Interval(this=exp.Literal.string(str(micros)), unit=exp.var("MICROSECONDS"))


def longest_window(view: FeatureView) -> timedelta:
    return max(a.window for a in view.aggregations)


def aggregate(agg: Aggregation, view: FeatureView, alias: str, instant: exp.Expr, *, bounded: bool = True) -> exp.Expr:
    """One aggregation at ``instant`` over the rows ``alias``, cast to the feature's declared type.
    ``bounded``: the rows are already limited to ``(instant - longest window, instant]``."""
    value = exp.column(agg.column, alias, quoted=True)
    if agg.function == "last":
        call: exp.Expr = exp.func("arg_max", value, exp.column(TIE_KEY, alias, quoted=True))
    else:
        call = exp.func(_FUNCTIONS[agg.function], value)
    if agg.window < longest_window(view) or not bounded:
        event = exp.column(EVENT_TS, alias, quoted=True)
        lower = exp.Sub(this=instant.copy(), expression=interval(agg.window))
        call = exp.Filter(this=call, expression=exp.Where(this=exp.GT(this=event, expression=lower)))
    dtype = {f.name: f.dtype for f in view.features}[agg.name]
    target = _duckdb_type(dtype.to_arrow())
    return call if target is None else exp.cast(call, exp.DataType.build(target))


def in_window(view: FeatureView, alias: str, instant: exp.Expr) -> exp.Expr:
    """``instant - longest window < event_ts <= instant``."""
    event = exp.column(EVENT_TS, alias, quoted=True)
    lower = exp.Sub(this=instant.copy(), expression=interval(longest_window(view)))
    return exp.and_(exp.LTE(this=event, expression=instant.copy()), exp.GT(this=event, expression=lower))


def _duckdb_type(arrow_type: object) -> str | None:
    import pyarrow as pa

    mapping = {pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.float64(): "DOUBLE", pa.float32(): "FLOAT",
               pa.string(): "VARCHAR", pa.bool_(): "BOOLEAN", pa.binary(): "BLOB"}
    found = mapping.get(arrow_type)
    if found is not None:
        return found
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP"
    return None  # arrays: min/max/last keep the column's own type
