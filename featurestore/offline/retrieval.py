"""Point-in-time-correct training sets, as one DuckDB query per view over Arrow.

For each entity row ``(keys, ts)`` and each requested view with ``ttl``: the view's row with equal
keys and ``ts - ttl <= event_ts <= ts`` with the greatest ``event_ts``; ties go to the greatest
created timestamp, then to the row ingested last. No match gives nulls.

Each view is joined by an ``ASOF LEFT JOIN`` or, when few rows fall in the ttl window, a range join
keeping the newest pair per entity row (``choose_strategy``). Rows from the offline store are
already deduplicated (one row per keys and event time), so they are ordered by event time alone.
Rows read straight from a source are ordered by a struct ``(event, created, ingestion order)``, so
the join itself picks the winner of the tie rules, with no separate deduplication pass. In the ASOF
plan the ttl bound is applied after the join: if the newest row at or before ``ts`` is older than
``ts - ttl``, nothing in the window is.

Only the join keys and timestamps of the entity frame enter DuckDB; the result comes back ordered by
row position and is appended to the caller's frame, which is otherwise untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlglot import exp

from featurestore.definitions import FeatureView
from featurestore.errors import RetrievalError
from featurestore.offline.sources import CREATED_TS, EVENT_TS, ORD
from featurestore.offline.store import TIE_KEY, OfflineStore, newest, probe_tie, unpack
from featurestore.timeutil import arrow_to_naive_utc
from featurestore.types import is_text

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

ROW_ID = "__row_id"
ENTITY_TS = "__ts"
ENTITY_TABLE = "__entity_rows"


@dataclass(frozen=True)
class ViewRequest:
    """Features wanted from one view, and the names they get in the output."""

    view: FeatureView
    features: tuple[str, ...]
    output_names: tuple[str, ...]


def point_in_time_join(
    con: duckdb.DuckDBPyConnection,
    entity: pa.Table,
    timestamp_column: str,
    requests: Sequence[ViewRequest],
    store: OfflineStore,
    key_types: dict[str, pa.DataType],
    *,
    strategy: str = "auto",
) -> pa.Table:
    """Append the requested features to ``entity`` (same rows, same order).

    ``strategy`` picks the join per view: ``asof``, ``range`` or ``auto`` (see ``choose_strategy``);
    all give the same answer.
    """
    if strategy not in JOIN_STRATEGIES:
        raise RetrievalError(f"join_strategy must be one of {', '.join(JOIN_STRATEGIES)}, got {strategy!r}")
    import pyarrow as pa

    probe = _probe_table(entity, timestamp_column, requests, key_types)
    con.register(ENTITY_TABLE, probe)
    try:
        # One query per view: peak memory holds one view's rows at a time, and each result is in
        # entity-row order, so its columns are appended without a re-join.
        results = []
        distinct_keys: dict[tuple[str, ...], int] = {}
        for req in requests:
            chosen = strategy
            if strategy == "auto":
                keys = req.view.join_keys
                if keys not in distinct_keys:
                    distinct_keys[keys] = max(_count_distinct(probe.column(k)) for k in keys)
                distinct = distinct_keys[keys]
                chosen = choose_strategy(req.view, probe.num_rows, distinct, store.row_stats(req.view))
            results.append(_join_view(con, store, req, chosen))
    finally:
        con.unregister(ENTITY_TABLE)

    out = entity
    by_name = {f.name: f for req in requests for f in req.view.features}
    for req, result in zip(requests, results, strict=True):
        for feat, name in zip(req.features, req.output_names, strict=True):
            column = result.column(name)
            target = by_name[feat].dtype.to_arrow() if feat in by_name else column.type
            column = _cast_feature(column, target)
            out = out.append_column(pa.field(name, target), column)
    return out


JOIN_STRATEGIES = ("auto", "asof", "range")


def choose_strategy(
    view: FeatureView, entity_rows: int, entity_keys: int, stats: tuple[int, datetime, datetime] | None
) -> str:
    """``range`` when the expected number of (entity row, feature row) pairs inside the ttl window
    is at most the view's row count, else ``asof``.

    A range join builds a hash table on the entity rows and streams the feature rows past it, then
    keeps the newest pair per entity row: no sort of the feature rows, flat memory. Its cost grows
    with the pairs, so long histories without a tight ttl go to the ASOF join, whose cost is a sort
    of both sides. Pairs are estimated as entity rows x rows per key x the ttl's share of the data's
    time span, taking the entity frame's distinct keys for the view's (from file statistics only).
    """
    if stats is None:
        return "asof"
    rows, first, last = stats
    per_key = rows / max(entity_keys, 1)
    span = max((last - first).total_seconds(), 1.0)
    share = 1.0 if view.ttl is None else min(1.0, view.ttl.total_seconds() / span)
    return "range" if entity_rows * per_key * share <= rows else "asof"


def _join_view(con: duckdb.DuckDBPyConnection, store: OfflineStore, req: ViewRequest, strategy: str) -> pa.Table:
    """Features of one view for every entity row, in entity-row order."""
    if req.view.aggregations:
        from featurestore.offline.store import stored_columns

        by_name = {a.name: a for a in req.view.aggregations}
        columns = sorted({by_name[f].column for f in req.features}, key=stored_columns(req.view).index)
        # The tie struct (built for every event) only serves `last`.
        needs_order = any(by_name[f].function == "last" for f in req.features)
        rows, _ = store.view_rows(con, req.view, columns, tie=needs_order)
        query = aggregate_query(req, rows)
    else:
        rows, needs_tie = store.view_rows(con, req.view, req.features)
        query = join_query(req, rows, needs_tie, strategy)
    return con.sql(query.sql("duckdb")).to_arrow_table()


def join_query(req: ViewRequest, rows: exp.Expr, needs_tie: bool, strategy: str) -> exp.Select:
    """The point-in-time join of the entity rows (table ``__entity_rows``: keys, ``__ts``,
    ``__row_id``) with a view's ``rows``, one result row per entity row in row order.

    ``asof`` and ``range`` are DuckDB plans (see ``choose_strategy``); ``portable`` is the same
    join without ``ASOF JOIN`` or ``arg_max`` of structs (a range join, then ``ROW_NUMBER``), for
    engines such as Spark.
    """
    alias = "v"
    probe_ts = exp.column(ENTITY_TS, "e", quoted=True)
    event_ts = exp.column(EVENT_TS, alias, quoted=True)
    on: list[exp.Expr] = [
        exp.EQ(this=exp.column(k, "e", quoted=True), expression=exp.column(k, alias, quoted=True))
        for k in req.view.join_keys
    ]
    in_window: exp.Expr | None = None
    if req.view.ttl is not None:
        lower = exp.Sub(
            this=probe_ts,
            expression=exp.Interval(this=exp.Literal.string(str(_micros(req.view.ttl))), unit=exp.var("MICROSECONDS")),
        )
        in_window = exp.GTE(this=event_ts, expression=lower)
    rows_source = exp.Subquery(this=rows, alias=exp.TableAlias(this=exp.to_identifier(alias)))
    entity_table = exp.to_table(ENTITY_TABLE, quoted=True, alias="e")
    order_by = exp.column(ROW_ID, "e", quoted=True)

    if strategy in ("range", "portable"):
        # Every pair in [ts - ttl, ts], then the newest per entity row.
        on.append(exp.LTE(this=event_ts, expression=probe_ts))
        if in_window is not None:
            on.append(in_window)
        if strategy == "portable":
            return _portable_join(req, rows_source, entity_table, exp.and_(*on), needs_tie)
        # arg_max over the ordering (event time, or the full tie struct), which is unique per key
        # among the view's rows.
        ordering = exp.column(TIE_KEY, alias, quoted=True) if needs_tie else event_ts
        best = newest([exp.column(feat, alias, quoted=True) for feat in req.features], ordering)
        grouped = (
            exp.select(exp.alias_(order_by, ROW_ID, quoted=True), exp.alias_(best, "__best", quoted=True))
            .from_(entity_table)
            .join(rows_source, on=exp.and_(*on), join_type="LEFT")
            .group_by(order_by)
        )
        return (
            exp.select(*unpack(exp.column("__best", "g", quoted=True), req.output_names))
            .from_(grouped.subquery("g"))
            .order_by(exp.column(ROW_ID, "g", quoted=True))
        )

    if needs_tie:
        on.append(exp.GTE(this=probe_tie(probe_ts), expression=exp.column(TIE_KEY, alias, quoted=True)))
    else:
        on.append(exp.GTE(this=probe_ts, expression=event_ts))
    select: list[exp.Expr] = []
    for feat, out in zip(req.features, req.output_names, strict=True):
        value: exp.Expr = exp.column(feat, alias, quoted=True)
        if in_window is not None:
            # The newest row at or before ts: if it is older than ts - ttl, so is every other.
            value = exp.Case(ifs=[exp.If(this=in_window.copy(), true=value)])
        select.append(exp.alias_(value, out, quoted=True))
    return (
        exp.select(*select)
        .from_(entity_table)
        .join(rows_source, on=exp.and_(*on), join_type="ASOF LEFT")
        .order_by(order_by)
    )


def _portable_join(
    req: ViewRequest, rows_source: exp.Subquery, entity_table: exp.Table, on: exp.Expr, needs_tie: bool
) -> exp.Select:
    alias = "v"
    order = [exp.Ordered(this=exp.column(EVENT_TS, alias, quoted=True), desc=True)]
    if needs_tie:
        order += [exp.Ordered(this=exp.column(c, alias, quoted=True), desc=True) for c in (CREATED_TS, ORD)]
    rank = exp.Window(
        this=exp.RowNumber(), partition_by=[exp.column(ROW_ID, "e", quoted=True)], order=exp.Order(expressions=order)
    )
    pairs = (
        exp.select(
            exp.alias_(exp.column(ROW_ID, "e", quoted=True), ROW_ID, quoted=True),
            *[exp.alias_(exp.column(f, alias, quoted=True), out, quoted=True)
              for f, out in zip(req.features, req.output_names, strict=True)],
            exp.alias_(rank, "__rank", quoted=True),
        )
        .from_(entity_table)
        .join(rows_source, on=on, join_type="INNER")
    )
    best = exp.and_(
        exp.EQ(this=exp.column(ROW_ID, "b", quoted=True), expression=exp.column(ROW_ID, "e", quoted=True)),
        exp.EQ(this=exp.column("__rank", "b", quoted=True), expression=exp.Literal.number(1)),
    )
    return (
        exp.select(*[exp.column(out, "b", quoted=True) for out in req.output_names])
        .from_(entity_table.copy())
        .join(pairs.subquery("b"), on=best, join_type="LEFT")
        .order_by(exp.column(ROW_ID, "e", quoted=True))
    )


def aggregate_query(req: ViewRequest, rows: exp.Expr) -> exp.Select:
    """Windowed aggregates for every entity row at its own time: a range join of the entity rows
    with the view's events in ``(ts - longest window, ts]``, one group per entity row. Portable
    as it is (no ASOF join)."""
    from featurestore.offline.aggregate import aggregate, in_window

    view = req.view
    by_name = {a.name: a for a in view.aggregations}
    alias = "v"
    probe_ts = exp.column(ENTITY_TS, "e", quoted=True)
    on: list[exp.Expr] = [
        exp.EQ(this=exp.column(k, "e", quoted=True), expression=exp.column(k, alias, quoted=True))
        for k in view.join_keys
    ]
    on.append(in_window(view, alias, probe_ts))
    row_id = exp.column(ROW_ID, "e", quoted=True)
    return (
        exp.select(*[
            exp.alias_(aggregate(by_name[f], view, alias, probe_ts), out, quoted=True)
            for f, out in zip(req.features, req.output_names, strict=True)
        ])
        .from_(exp.to_table(ENTITY_TABLE, quoted=True, alias="e"))
        .join(exp.Subquery(this=rows, alias=exp.TableAlias(this=exp.to_identifier(alias))),
              on=exp.and_(*on), join_type="LEFT")
        .group_by(row_id)
        .order_by(row_id)
    )


def _count_distinct(column: pa.ChunkedArray) -> int:
    """Approximate distinct count (HyperLogLog; ~1% error is plenty for choosing a plan)."""
    import polars as pl

    count = pl.Series(column).approx_n_unique()
    return int(count) if isinstance(count, int | float) else 1


def _micros(delta: object) -> int:
    from datetime import timedelta

    assert isinstance(delta, timedelta)
    return delta // timedelta(microseconds=1)


def _cast_feature(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    import pyarrow as pa
    import pyarrow.types as pat

    if column.type == target:
        return column
    if pat.is_timestamp(target) and pat.is_timestamp(column.type) and column.type.tz is None:
        return column.cast(pa.timestamp(target.unit)).cast(target)
    return column.cast(target)


def _probe_table(
    entity: pa.Table, timestamp_column: str, requests: Sequence[ViewRequest], key_types: dict[str, pa.DataType]
) -> pa.Table:
    """The slim table DuckDB sees: join keys, the UTC probe time and the row position."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.types as pat

    columns = entity.column_names
    if timestamp_column not in columns:
        raise RetrievalError(
            f"entity_df has no timestamp column {timestamp_column!r}; its columns are {columns}. "
            "Add the column or pass timestamp_column='<name>'"
        )
    ts = entity.column(timestamp_column)
    if not (pat.is_timestamp(ts.type) or pat.is_date(ts.type)):
        raise RetrievalError(
            f"entity_df column {timestamp_column!r} has type {ts.type}; expected a datetime (naive "
            "values are read as UTC). Convert it, for example with pl.col(...).str.to_datetime()"
        )
    if ts.null_count:
        raise RetrievalError(
            f"entity_df column {timestamp_column!r} has {ts.null_count} null value(s); every entity row "
            "needs a timestamp"
        )
    arrays: dict[str, pa.ChunkedArray | pa.Array] = {}
    for req in requests:
        for key in req.view.join_keys:
            if key in arrays:
                continue
            if key not in columns:
                raise RetrievalError(
                    f"entity_df has no column {key!r}, a join key of feature view {req.view.name!r}; "
                    f"its columns are {columns}"
                )
            arrays[key] = _check_key(entity.column(key), key, key_types.get(key), req.view.name)
    arrays[ENTITY_TS] = arrow_to_naive_utc(ts)
    # Built by Polars: pa.array() of Python or numpy values imports pandas when it is installed
    # (~0.4 s on first use) and range() walks Python ints.
    arrays[ROW_ID] = pl.int_range(0, entity.num_rows, dtype=pl.Int64, eager=True).to_arrow()
    return pa.table(arrays)


def _check_key(
    column: pa.ChunkedArray, key: str, source_type: pa.DataType | None, view: str
) -> pa.ChunkedArray:
    import pyarrow as pa
    import pyarrow.types as pat

    typ = column.type
    if source_type is None:
        return column
    if pat.is_dictionary(typ):
        column = column.cast(typ.value_type)
        typ = column.type
    if pat.is_integer(source_type) and pat.is_integer(typ):
        return column.cast(pa.int64())
    if is_text(source_type) and is_text(typ):
        return column.cast(pa.string())
    if pat.is_null(typ):
        return column.cast(source_type)
    if typ == source_type:
        return column
    raise RetrievalError(
        f"entity_df column {key!r} has type {typ}, but feature view {view!r} stores it as "
        f"{source_type}; cast the column to match"
    )
