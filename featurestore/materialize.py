"""Online materialization: the latest row per entity of a time window, into the online store.

For a view and a window ``[start, end)``, DuckDB picks each entity's newest row with the tie rules
of training sets (event time, then created time, then ingestion order) from the view's rows: the
offline store's committed snapshots where they cover the window, the source elsewhere, into a
temporary table of one row per entity. That streams out as Arrow record batches, is encoded
column-wise (``online.codec``) and is written newest-wins (``OnlineStore.write``): a replayed or
older window never overwrites newer values. Memory grows with the entities of the window (the
selection), not with its rows, and the writes hold one batch at a time. While one view is written,
the next view's selection runs in a thread. Each view is one run in the registry, with
its window, row count, duration and outcome.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from featurestore.definitions import FeatureView
from featurestore.errors import MaterializationError, ValidationError, is_transient
from featurestore.offline.sources import CREATED_TS, EVENT_TS
from featurestore.offline.store import TIE_KEY, OfflineStore, newest, ts_literal, unpack
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
    return materialize_views(con, offline, online, [(view, start, end)], progress=progress)[0]


def materialize_views(
    con: duckdb.DuckDBPyConnection,
    offline: OfflineStore,
    online: OnlineStore,
    jobs: Sequence[tuple[FeatureView, datetime | None, datetime]],
    *,
    progress: ViewProgress | None = None,
) -> list[OnlineRunResult]:
    """Materialize views one after the other, each one a run. The next view's selection (DuckDB,
    in a thread) overlaps the current view's writes (mostly waiting on Redis)."""
    runs = [_ViewRun(offline, view, start, end) for view, start, end in jobs]
    results: list[OnlineRunResult] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="materialize") as pool:
        pending = pool.submit(runs[0].select, con.cursor()) if runs else None
        try:
            for i, run in enumerate(runs):
                assert pending is not None
                pending.result()
                pending = pool.submit(runs[i + 1].select, con.cursor()) if i + 1 < len(runs) else None
                results.append(run.write(online, progress))
        except BaseException:
            if pending is not None:
                with contextlib.suppress(BaseException):
                    pending.result()
            for run in runs:
                run.abandon()
            raise
    return results


class _ViewRun:
    """One view's online run: select its latest rows into a temporary table, then write them."""

    def __init__(self, offline: OfflineStore, view: FeatureView, start: datetime | None, end: datetime) -> None:
        self.offline, self.view, self.start, self.end = offline, view, start, end
        self.end_n = to_naive_utc(end)
        self.start_n = None if start is None else to_naive_utc(start)
        if self.start_n is not None and self.end_n <= self.start_n:
            raise MaterializationError(f"materialize {view.name}: end {end} must be after start {start}")
        self.run_id: str | None = None
        self.finished = False
        self.cursor: duckdb.DuckDBPyConnection | None = None
        self.table = ""
        self.rows = 0
        self.began = 0.0

    def select(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """Record the run as begun and compute the latest row per entity (one row per entity, so
        the progress bar knows its total and the writes stream from it in batches)."""
        registry = self.offline.registry
        self.run_id = registry.begin_run(
            self.offline.project, self.view.name, "online",
            window_start=None if self.start_n is None else self.start_n.isoformat(),
            window_end=self.end_n.isoformat(), storage_fingerprint=storage_fingerprint(self.view),
        )
        self.began = time.monotonic()
        self.cursor = cursor
        try:
            self.table = f"__latest_{self.run_id.replace('-', '_')}"
            query = latest_rows_query(cursor, self.offline, self.view, self.start_n, self.end_n)
            checker = self.offline.checker
            if checker is not None:  # the sources' rows of the window, before anything is written
                checker.check_sources(cursor, self.offline.compiler, self.view, self.start, self.end,
                                      run_id=self.run_id, stage="online materialization")
            cursor.sql(query.sql("duckdb")).create(self.table)
            self.rows = int(cursor.table(self.table).count("*").fetchall()[0][0])
        except BaseException as exc:
            raise self._fail(exc) from exc

    def write(self, online: OnlineStore, progress: ViewProgress | None) -> OnlineRunResult:
        assert self.cursor is not None and self.run_id is not None
        reader = None
        try:
            on_batch = progress(self.view.name, self.rows) if progress is not None else None
            checker = self.offline.checker
            source: Any
            kept: pa.Table | None = None  # the rows written, when validation kept only some
            if checker is not None and self.view.expectations and not self.view.aggregations:
                # Validated as a whole before the first write; aggregates are checked as events.
                rows = checker.check_rows(self.view, self.cursor.table(self.table).to_arrow_table(), run_id=self.run_id,
                                          window_end=self.end, stage="online materialization")
                source = iter(rows.to_batches(BATCH_ROWS))
                kept = rows
            else:
                source = reader = self.cursor.table(self.table).to_arrow_reader(BATCH_ROWS)
            batches = encode_batches(self.offline.project, self.view, source)
            # One row per entity: no key repeats in the run.
            written = online.write(batches, view_ttl_seconds(self.view), on_batch, distinct=True)
        except BaseException as exc:
            raise self._fail(exc) from exc
        finally:
            if reader is not None:
                reader.close()  # a half-read stream keeps the connection busy
        if self.rows:  # what the online store now holds for the window's entities
            from featurestore.monitoring.monitor import record

            features = list(self.view.feature_names)
            if kept is None:
                kept = self.cursor.table(self.table).select(*[f'"{f}"' for f in features]).to_arrow_table()
            record(self.offline.registry, self.offline.project, self.view.name, self.run_id, kept, features)
        self.offline.registry.finish_run(self.run_id, status="committed", rows=self.rows, started=self.began)
        self.finished = True
        self._release()
        return OnlineRunResult(
            self.run_id, self.view.name, self.start, self.end, self.rows, written, time.monotonic() - self.began
        )

    def abandon(self) -> None:
        """A run begun but not finished because another view failed: recorded as failed."""
        if self.run_id is not None and not self.finished:
            self._fail(MaterializationError("not written: an earlier view of the same materialization failed"))
        self._release()

    def _fail(self, exc: BaseException) -> BaseException:
        """Record the run as failed and return the error to raise (project errors keep their kind)."""
        assert self.run_id is not None
        if not self.finished:
            self.offline.registry.finish_run(
                self.run_id, status="failed", rows=self.rows, message=f"{type(exc).__name__}: {exc}", started=self.began
            )
            self.finished = True
        self._release()
        if not isinstance(exc, Exception) or isinstance(exc, MaterializationError | ValidationError):
            return exc
        error = MaterializationError(f"materialize {self.view.name} online, run {self.run_id}, failed: {exc}")
        error.transient = is_transient(exc)
        return error

    def _release(self) -> None:
        if self.cursor is not None:
            with contextlib.suppress(Exception):
                self.cursor.execute(f'DROP TABLE IF EXISTS "{self.table}"')  # our name: letters, digits, _
                self.cursor.close()
            self.cursor = None


def latest_rows_query(
    con: duckdb.DuckDBPyConnection, offline: OfflineStore, view: FeatureView,
    start: datetime | None, end: datetime,
) -> exp.Select:
    """Join keys, features, ``__event_ts`` and ``__created_ts`` of each entity's newest row in the window."""
    if view.aggregations:
        return aggregates_query(con, offline, view, start, end)
    keys = list(view.join_keys)
    feats = list(view.feature_names)
    rows, needs_tie = offline.view_rows(con, view, feats)
    alias = "v"
    event = exp.column(EVENT_TS, alias, quoted=True)
    fields = [*feats, EVENT_TS, CREATED_TS]
    ordering = exp.column(TIE_KEY, alias, quoted=True) if needs_tie else event
    window: list[exp.Expr] = [exp.LT(this=event, expression=ts_literal(end))]
    if start is not None:
        window.append(exp.GTE(this=event, expression=ts_literal(start)))
    grouped = (
        exp.select(*[exp.column(k, alias, quoted=True) for k in keys],
                   exp.alias_(newest([exp.column(f, alias, quoted=True) for f in fields], ordering), LATEST,
                              quoted=True))
        .from_(exp.Subquery(this=rows, alias=exp.TableAlias(this=exp.to_identifier(alias))))
        .where(exp.and_(*window))
        .group_by(*[exp.column(k, alias, quoted=True) for k in keys])
    )
    return exp.select(
        *[exp.column(k, "g", quoted=True) for k in keys], *unpack(exp.column(LATEST, "g", quoted=True), fields)
    ).from_(grouped.subquery("g"))


def aggregates_query(
    con: duckdb.DuckDBPyConnection, offline: OfflineStore, view: FeatureView, start: datetime | None, end: datetime,
) -> exp.Select:
    """Each entity's aggregates at the instant ``end`` (events in ``(end - window, end]``), with
    ``end`` as their event time: the training-set value at that instant.

    Entities with an event in ``(start - longest window, end]`` are written: the others' windows
    did not change since ``start``, and this includes entities whose windows emptied (count 0).
    """
    from featurestore.offline.aggregate import aggregate, interval, longest_window
    from featurestore.offline.store import stored_columns

    keys = list(view.join_keys)
    needs_order = any(a.function == "last" for a in view.aggregations)  # the tie struct only serves `last`
    rows, _ = offline.view_rows(con, view, list(stored_columns(view)), tie=needs_order)
    alias = "v"
    instant = ts_literal(end)
    event = exp.column(EVENT_TS, alias, quoted=True)
    where: exp.Expr = exp.LTE(this=event, expression=instant)
    if start is not None:
        lower = exp.Sub(this=ts_literal(start), expression=interval(longest_window(view)))
        where = exp.and_(where, exp.GT(this=event, expression=lower))
    values = [
        exp.alias_(aggregate(agg, view, alias, instant, bounded=False), agg.name, quoted=True)
        for agg in view.aggregations
    ]
    return (
        exp.select(
            *[exp.column(k, alias, quoted=True) for k in keys], *values,
            exp.alias_(instant.copy(), EVENT_TS, quoted=True),
            exp.alias_(ts_literal("0001-01-01 00:00:00"), CREATED_TS, quoted=True),
        )
        .from_(exp.Subquery(this=rows, alias=exp.TableAlias(this=exp.to_identifier(alias))))
        .where(where)
        .group_by(*[exp.column(k, alias, quoted=True) for k in keys])
    )


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
