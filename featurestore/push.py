"""Push: rows written straight to a feature view's stores, bypassing its source.

Pushed rows carry the view's join keys, the source's timestamp column and every feature (the
created-timestamp column is optional). They are checked against the view's schema before anything
is written, then written with the same newest-wins rule as materialization: rows tied on event and
created time win in push order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from featurestore.definitions import FeatureView
from featurestore.errors import PushError
from featurestore.offline.sources import CREATED_TS, EVENT_TS
from featurestore.timeutil import arrow_to_naive_utc
from featurestore.types import arrow_type_name

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.store import FeatureStore


def push_rows(store: FeatureStore, view: FeatureView, table: pa.Table, to: str) -> int:
    """Validate ``table`` against ``view`` and write it to the stores ``to`` names."""
    rows = normalize(view, table)
    checker = store.checker
    if checker is not None:  # validated before anything is written, to either store
        rows = checker.check_rows(view, rows, run_id=None, window_end=datetime.now(UTC), stage=f"push to {to}")
    if to in ("online", "online_and_offline"):
        if not view.online:
            raise PushError(f"feature view {view.name!r} has online=False: push with to='offline'")
        from featurestore.materialize import encode_batches, view_ttl_seconds

        batches = encode_batches(store.project, view, iter(rows.to_batches()))
        store.online_store.write(batches, view_ttl_seconds(view))
    if to in ("offline", "online_and_offline"):
        store._offline().push(view, rows)
    return rows.num_rows


def normalize(view: FeatureView, table: pa.Table) -> pa.Table:
    """Join keys, features (declared types), ``__event_ts`` and ``__created_ts`` (naive UTC)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if view.aggregations:
        raise PushError(
            f"push to {view.name!r}: the view aggregates events, so its values are computed, not pushed; "
            "add the events to its source instead"
        )
    ts_col = view.timestamp_column
    created_col = view.created_column
    required = [*view.join_keys, ts_col, *view.feature_names]
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise PushError(
            f"push to {view.name!r}: missing column(s) {missing}; pushed rows need the join keys, "
            f"{ts_col!r} and every feature: {required}"
        )
    columns: dict[str, pa.ChunkedArray | pa.Array] = {}
    for key in view.join_keys:
        col = table.column(key)
        if not (pa.types.is_integer(col.type) or pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise PushError(f"push to {view.name!r}: join key {key!r} must be integers or strings, got {col.type}")
        if col.null_count:
            raise PushError(f"push to {view.name!r}: join key {key!r} has {col.null_count} null value(s)")
        columns[key] = col
    for feature in view.features:
        col = table.column(feature.name)
        if not feature.dtype.accepts(col.type):
            raise PushError(
                f"push to {view.name!r}: column {feature.name!r} is {arrow_type_name(col.type)}, but the "
                f"feature is declared {feature.dtype!r}"
            )
        try:
            columns[feature.name] = pc.cast(col, feature.dtype.to_arrow())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise PushError(
                f"push to {view.name!r}: column {feature.name!r} does not fit {feature.dtype!r}: {exc}"
            ) from None
    columns[EVENT_TS] = _timestamps(view, table, ts_col)
    if table.column(ts_col).null_count:
        raise PushError(f"push to {view.name!r}: {ts_col!r} has {table.column(ts_col).null_count} null value(s)")
    # No created time reads as the lowest one, as for sources without the column.
    lowest = pa.scalar(datetime(1, 1, 1), pa.timestamp("us"))
    if created_col is not None and created_col in table.column_names:
        columns[CREATED_TS] = pc.fill_null(_timestamps(view, table, created_col), lowest)
    else:
        columns[CREATED_TS] = pc.fill_null(pa.nulls(table.num_rows, pa.timestamp("us")), lowest)
    return pa.table(columns)


def _timestamps(view: FeatureView, table: pa.Table, name: str) -> pa.ChunkedArray | pa.Array:
    import pyarrow as pa

    col = table.column(name)
    if not (pa.types.is_timestamp(col.type) or pa.types.is_date(col.type)):
        raise PushError(
            f"push to {view.name!r}: {name!r} must be a timestamp column (naive values are UTC), got {col.type}"
        )
    return arrow_to_naive_utc(col)
