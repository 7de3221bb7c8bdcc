"""Online materialization: the latest row per entity of a time window, into the online store.

For a view and a window ``[start, end)``, DuckDB picks each entity's newest row with the tie rules
of training sets (event time, then created time, then ingestion order) from the view's rows: the
offline store's committed snapshots where they cover the window, the source elsewhere. The result
streams out as Arrow record batches, is encoded column-wise (``online.codec``) and is written
newest-wins (``OnlineStore.write``), so memory holds one batch, not the window's rows, and a
replayed or older window never overwrites newer values. Each view is one run in the registry, with
its window, row count, duration and outcome.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlglot import exp

from featurestore.definitions import FeatureView
from featurestore.errors import FeatureStoreError, MaterializationError
from featurestore.offline.sources import CREATED_TS, EVENT_TS
from featurestore.offline.store import TIE_KEY, OfflineStore, ts_literal
from featurestore.online.codec import KeyCodec, ValueCodec
from featurestore.plan import storage_fingerprint
from featurestore.timeutil import to_naive_utc

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from featurestore.online.base import OnlineStore

BATCH_ROWS = 50_000
LATEST = "__latest"

# Called once per view before writing (view name, rows to write), then with each batch's row count.
ViewProgress = Callable[[str, int], Callable[[int], None] | None]


@dataclass(frozen=True)
class OnlineRunResult:
    run_id: str
    view: str
    window_start: datetime | None
    window_end: datetime
    rows: int
    written: int
    seconds: float


def materialize_view(
    con: duckdb.DuckDBPyConnection,
    offline: OfflineStore,
    online: OnlineStore,
    view: FeatureView,
    start: datetime | None,
    end: datetime,
    *,
    progress: ViewProgress | None = None,
) -> OnlineRunResult:
    """Write the view's latest row per entity with event time in ``[start, end)`` online, as one run."""
    end_n = to_naive_utc(end)
    start_n = None if start is None else to_naive_utc(start)
    if start_n is not None and end_n <= start_n:
        raise MaterializationError(f"materialize {view.name}: end {end} must be after start {start}")
    registry = offline.registry
    run_id = registry.begin_run(
        offline.project, view.name, "online",
        window_start=None if start_n is None else start_n.isoformat(), window_end=end_n.isoformat(),
        storage_fingerprint=storage_fingerprint(view),
    )
    began = time.monotonic()
    rows = written = 0
    try:
        # A temporary table holds one row per entity (not per event), so the progress bar knows
        # its total and the online writes stream from it in batches.
        table = f"__latest_{run_id.replace('-', '_')}"
        con.sql(latest_rows_query(con, offline, view, start_n, end_n).sql("duckdb")).create(table)
        reader = None
        try:
            rows = int(con.table(table).count("*").fetchall()[0][0])
            on_batch = progress(view.name, rows) if progress is not None else None
            reader = con.table(table).to_arrow_reader(BATCH_ROWS)
            written = online.write(encode_batches(offline.project, view, reader), view_ttl_seconds(view), on_batch)
        finally:
            if reader is not None:
                reader.close()  # a half-read stream keeps the connection busy
            con.execute(f'DROP TABLE IF EXISTS "{table}"')  # the name is ours: letters, digits, _
        registry.finish_run(run_id, status="committed", rows=rows, started=began)
    except BaseException as exc:
        registry.finish_run(run_id, status="failed", rows=rows, message=f"{type(exc).__name__}: {exc}", started=began)
        if isinstance(exc, Exception) and not isinstance(exc, FeatureStoreError):
            raise MaterializationError(f"materialize {view.name} online, run {run_id}, failed: {exc}") from exc
        if isinstance(exc, FeatureStoreError) and not isinstance(exc, MaterializationError):
            error = MaterializationError(f"materialize {view.name} online, run {run_id}, failed: {exc}")
            error.transient = exc.transient
            raise error from exc
        raise
    return OnlineRunResult(run_id, view.name, start, end, rows, written, time.monotonic() - began)


def latest_rows_query(
    con: duckdb.DuckDBPyConnection, offline: OfflineStore, view: FeatureView,
    start: datetime | None, end: datetime,
) -> exp.Select:
    """Join keys, features, ``__event_ts`` and ``__created_ts`` of each entity's newest row in the window."""
    keys = list(view.join_keys)
    feats = list(view.feature_names)
    rows, needs_tie = offline.view_rows(con, view, feats)
    alias = "v"
    event = exp.column(EVENT_TS, alias, quoted=True)
    fields = [*feats, EVENT_TS, CREATED_TS]
    values: list[exp.Expr] = [exp.column(f, alias, quoted=True) for f in fields]
    packed = exp.Struct(expressions=[
        exp.PropertyEQ(this=exp.to_identifier(f"f{i}"), expression=value) for i, value in enumerate(values)
    ])
    ordering = exp.column(TIE_KEY, alias, quoted=True) if needs_tie else event
    window: list[exp.Expr] = [exp.LT(this=event, expression=ts_literal(end))]
    if start is not None:
        window.append(exp.GTE(this=event, expression=ts_literal(start)))
    grouped = (
        exp.select(*[exp.column(k, alias, quoted=True) for k in keys],
                   exp.alias_(exp.func("arg_max", packed, ordering), LATEST, quoted=True))
        .from_(exp.Subquery(this=rows, alias=exp.TableAlias(this=exp.to_identifier(alias))))
        .where(exp.and_(*window))
        .group_by(*[exp.column(k, alias, quoted=True) for k in keys])
    )
    best = exp.column(LATEST, "g", quoted=True)
    return exp.select(
        *[exp.column(k, "g", quoted=True) for k in keys],
        *[exp.alias_(exp.Dot(this=best.copy(), expression=exp.to_identifier(f"f{i}")), name, quoted=True)
          for i, name in enumerate(fields)],
    ).from_(grouped.subquery("g"))


def encode_batches(
    project: str, view: FeatureView, batches: Iterator[pa.RecordBatch] | pa.RecordBatchReader
) -> Iterator[tuple[pa.Array, pa.Array]]:
    """Online (keys, values) for record batches holding join keys, features and timestamps."""
    import pyarrow as pa

    key_codec = KeyCodec(project, view.name, view.join_keys)
    value_codec = ValueCodec(view)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        keys = key_codec.keys_from_arrow([batch.column(k) for k in view.join_keys])
        created = batch.column(CREATED_TS) if CREATED_TS in batch.schema.names else None
        try:
            values = value_codec.encode(batch, batch.column(EVENT_TS), created)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise MaterializationError(
                f"view {view.name!r}: a value does not fit its declared type ({exc}); fix the source "
                "or the Field's dtype"
            ) from None
        yield keys, values


def view_ttl_seconds(view: FeatureView) -> int | None:
    """Online keys live one ttl after their last write (reads still judge age by event time)."""
    return None if view.ttl is None else max(1, math.ceil(view.ttl.total_seconds()))
