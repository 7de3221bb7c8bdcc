"""The Parquet offline store: immutable, deduplicated snapshots of each view's rows.

Layout: ``<root>/<project>/<view>/run=<run_id>/__date=<YYYY-MM-DD>/*.parquet``. A run writes the
view's rows with event time in ``[start, end)``, keeping one row per (join keys, event time): the
winner of the tie rules (greatest created timestamp, then latest ingested). That is all a
point-in-time join ever needs, so reads from the store need no tie-breaking and join in one ASOF
pass. Files are written under a temporary name and renamed; the run becomes visible only when the
registry marks it committed, so a crash never leaves half-visible data.

Reading a view combines committed runs (newest run wins where windows overlap) with the source
itself for time ranges no run covers; a training set is therefore the same with or without
materialization.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlglot import exp

from featurestore.compile import Compiler, ViewLookup
from featurestore.definitions import FeatureView
from featurestore.errors import MaterializationError, ValidationError, is_transient
from featurestore.offline.sources import CREATED_TS, EVENT_TS, MIN_TS, ORD, source_stats
from featurestore.plan import storage_fingerprint
from featurestore.registry import Registry, Run
from featurestore.timeutil import to_naive_utc

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from featurestore.validation import Checker

DATE_PART = "__date"
TIE_KEY = "__tie"
_MAX_TS = "9999-12-31 23:59:59"
# Ingestion order of pushed rows: above every source row (file index << 40), then by push.
_PUSH_ORDER = 1 << 61
_PUSH_STRIDE = 1 << 32


@dataclass(frozen=True)
class RunResult:
    run_id: str
    view: str
    rows: int
    location: str
    seconds: float


Interval = tuple[datetime | None, datetime | None]  # [lo, hi); None is unbounded


class OfflineStore:
    """Parquet snapshots of feature views under one root folder."""

    def __init__(
        self, root: Path, project: str, registry: Registry, repo_path: Path, lookup: ViewLookup | None = None
    ) -> None:
        self.root = root
        self.project = project
        self.registry = registry
        self.repo_path = repo_path
        # Views that other views read are compiled from their applied definitions.
        self.compiler = Compiler(repo_path, lookup or self._applied_view)
        # Validates batches before they are written (set by FeatureStore; None: no validation).
        self.checker: Checker | None = None
        # Footer statistics per view, read once per store (a store lives for one call).
        self._stats: dict[str, tuple[int, datetime, datetime] | None] = {}
        self._columns: dict[str, frozenset[str]] = {}

    def _applied_view(self, name: str) -> FeatureView:
        from featurestore.definitions import definition_from_spec

        obj = self.registry.get_object(self.project, FeatureView.kind, name)
        if obj is None:
            raise MaterializationError(f"feature view {name!r} is read by another view but is not applied")
        view = definition_from_spec(FeatureView.kind, obj.spec)
        assert isinstance(view, FeatureView)
        return view

    def view_dir(self, view_name: str) -> Path:
        return self.root / self.project / view_name

    # -- writing ---------------------------------------------------------------------------------

    def materialize(
        self, con: duckdb.DuckDBPyConnection, view: FeatureView, start: datetime, end: datetime
    ) -> RunResult:
        """Snapshot the view's rows with event time in ``[start, end)`` as one committed run."""
        start_n, end_n = to_naive_utc(start), to_naive_utc(end)
        if end_n <= start_n:
            raise MaterializationError(f"materialize {view.name}: end {end} must be after start {start}")
        run_id = self.registry.begin_run(
            self.project, view.name, "offline", window_start=start_n.isoformat(), window_end=end_n.isoformat(),
            storage_fingerprint=storage_fingerprint(view),
        )
        began = time.monotonic()
        tmp = self.view_dir(view.name) / f"_tmp-{run_id}"
        final = self.view_dir(view.name) / f"run={run_id}"
        try:
            rows = self._write(con, view, start_n, end_n, tmp, run_id)
            if rows:
                self._record_statistics(view, tmp, run_id)
                tmp.rename(final)
            self.registry.finish_run(
                run_id, status="committed", rows=rows, location=str(final) if rows else None, started=began
            )
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
            self.registry.finish_run(
                run_id, status="failed", message=f"{type(exc).__name__}: {exc}", started=began
            )
            if isinstance(exc, Exception) and not isinstance(exc, MaterializationError | ValidationError):
                error = MaterializationError(f"materialize {view.name} run {run_id} failed: {exc}")
                error.transient = is_transient(exc)  # a dropped connection is worth a retry
                raise error from exc
            raise
        return RunResult(run_id, view.name, rows, str(final), time.monotonic() - began)

    def _write(
        self, con: duckdb.DuckDBPyConnection, view: FeatureView, start: datetime, end: datetime, target: Path,
        run_id: str,
    ) -> int:
        query = self.snapshot_query(con, view, start, end)
        # No ORDER BY: both join plans hash or sort by key themselves, and sorting 10M rows here
        # cost 1.5 s of a 7.3 s snapshot write.
        target.parent.mkdir(parents=True, exist_ok=True)
        checked_name = None
        if self.checker is not None:
            # Validated before anything is written: the sources' rows, then the view's rows.
            self.checker.check_sources(con, self.compiler, view, start, end, run_id=run_id, stage="offline snapshot")
            if view.expectations:
                rows = con.sql(query.sql("duckdb")).to_arrow_table()
                checked = self.checker.check_rows(view, rows, run_id=run_id, window_end=end, stage="offline snapshot")
                checked_name = f"__checked_{run_id.replace('-', '_')}"  # our id: letters, digits, _
                con.register(checked_name, checked)
                query = exp.select(exp.Star()).from_(exp.to_table(checked_name, quoted=True))
        copy = exp.Copy(
            this=query.subquery(),
            kind=False,  # COPY ... TO
            files=[exp.Literal.string(str(target))],
            params=[
                exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("parquet")),
                exp.CopyParameter(this=exp.var("PARTITION_BY"), expression=exp.Tuple(
                    expressions=[exp.column(DATE_PART, quoted=True)])),
            ],
        )
        try:
            result = con.execute(copy.sql("duckdb")).fetchone()
        finally:
            if checked_name is not None:
                con.unregister(checked_name)
        rows = result[0] if result else 0
        return int(rows)

    def _record_statistics(self, view: FeatureView, written: Path, run_id: str) -> None:
        """Column statistics of a snapshot's value columns, kept in the registry with its run."""
        import polars as pl

        from featurestore.monitoring.monitor import record

        columns = list(stored_columns(view))
        rows = pl.scan_parquet(written / "**" / "*.parquet", hive_partitioning=False).select(columns).collect()
        record(self.registry, self.project, view.name, run_id, rows, columns)

    def snapshot_query(
        self, con: duckdb.DuckDBPyConnection, view: FeatureView, start: datetime, end: datetime
    ) -> exp.Select:
        """The rows a snapshot of ``[start, end)`` holds: one per (keys, event time), the winner of
        the tie rules (every event for an aggregating view), with the event date to partition by."""
        keys = list(view.join_keys)
        feats = list(stored_columns(view))
        rel = self.compiler.rows(con, view, [*keys, *feats]).subquery("src")
        window = exp.and_(
            exp.GTE(this=exp.column(EVENT_TS, quoted=True), expression=ts_literal(start)),
            exp.LT(this=exp.column(EVENT_TS, quoted=True), expression=ts_literal(end)),
        )
        rank = exp.Window(
            this=exp.RowNumber(),
            partition_by=[exp.column(c, quoted=True) for c in [*keys, EVENT_TS]],
            order=exp.Order(expressions=[
                exp.Ordered(this=exp.column(CREATED_TS, quoted=True), desc=True),
                exp.Ordered(this=exp.column(ORD, quoted=True), desc=True),
            ]),
        )
        # Aggregating views keep every event, with its ingestion order for exact ties.
        kept = [*keys, *feats, EVENT_TS, CREATED_TS, *([ORD] if view.aggregations else [])]
        query = (
            exp.select(
                *[exp.column(c, quoted=True) for c in kept],
                exp.alias_(exp.cast(exp.column(EVENT_TS, quoted=True), "DATE"), DATE_PART, quoted=True),
            )
            .from_(rel)
            .where(window)
        )
        if not view.aggregations:
            # Aggregations count every event; other views keep the winner per key and event time.
            query = query.qualify(exp.EQ(this=rank, expression=exp.Literal.number(1)))
        return query

    def push(self, view: FeatureView, rows: pa.Table) -> RunResult:
        """Store pushed rows (join keys, features, ``__event_ts``, ``__created_ts``) as a committed
        push run. Reads add them to the view's rows; ties with source rows go to the pushed row,
        and between pushes to the later one."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        bounds = pc.min_max(rows.column(EVENT_TS))
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
        run_id = self.registry.begin_run(
            self.project, view.name, "push", window_start=None if lo is None else lo.isoformat(),
            window_end=None if hi is None else hi.isoformat(), storage_fingerprint=storage_fingerprint(view),
        )
        began = time.monotonic()
        tmp = self.view_dir(view.name) / f"_tmp-{run_id}"
        final = self.view_dir(view.name) / f"push={run_id}"
        try:
            tmp.mkdir(parents=True)
            order = _arange(rows.num_rows)
            pq.write_table(rows.append_column(ORD, order), tmp / "rows.parquet")
            tmp.rename(final)
            self.registry.finish_run(run_id, status="committed", rows=rows.num_rows, location=str(final), started=began)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
            self.registry.finish_run(run_id, status="failed", message=f"{type(exc).__name__}: {exc}", started=began)
            raise
        return RunResult(run_id, view.name, rows.num_rows, str(final), time.monotonic() - began)

    def pushed_runs(self, view: FeatureView) -> list[Run]:
        current = storage_fingerprint(view)
        return [
            r for r in self.registry.committed_runs(self.project, view.name, kind="push")
            if r.storage_fingerprint == current and r.rows and r.location
        ]

    # -- reading ---------------------------------------------------------------------------------

    def visible_runs(self, view: FeatureView) -> list[Run]:
        """Committed runs whose data still matches the view's definition, oldest commit first."""
        current = storage_fingerprint(view)
        return [
            r for r in self.registry.committed_runs(self.project, view.name)
            if r.storage_fingerprint == current
        ]

    def _run_columns(self, location: str) -> frozenset[str]:
        """A run's stored columns, read once per store (a store lives for one call)."""
        if location not in self._columns:
            self._columns[location] = _read_columns(location)
        return self._columns[location]

    def row_stats(self, view: FeatureView) -> tuple[int, datetime, datetime] | None:
        """Row count and event-time span of the view's source, from Parquet footers (None: unknown)."""
        if view.name not in self._stats:
            source = view.file_source
            self._stats[view.name] = None if source is None else source_stats(source, self.repo_path)
        return self._stats[view.name]

    def view_rows(
        self, con: duckdb.DuckDBPyConnection, view: FeatureView, columns: Sequence[str], *, tie: bool = False
    ) -> tuple[exp.Expr, bool]:
        """The view's rows (join keys, ``columns``, ``__event_ts``, ``__created_ts``) as a DuckDB subquery.

        Returns the query and whether it needs tie-breaking (True when any part comes straight
        from the source or from pushes; then a ``__tie`` struct orders rows (event, created,
        ingestion)). ``tie`` asks for the struct in every case.
        """
        keys = list(view.join_keys)
        wanted = [*keys, *[c for c in columns if c not in keys]]
        pieces, remainder = coverage(self.visible_runs(view))
        if pieces and remainder:
            stats = self.row_stats(view)
            remainder = _clip(remainder, None if stats is None else (stats[1], stats[2]))
        pushes = self.pushed_runs(view)
        needs_tie = tie or bool(remainder) or bool(pushes)
        parts: list[exp.Select] = []
        for run, lo, hi in pieces:
            if not run.rows or not run.location:
                continue
            files = exp.func(
                "read_parquet",
                exp.Literal.string(str(Path(run.location) / "**" / "*.parquet")),
                exp.EQ(this=exp.column("hive_partitioning"), expression=exp.false()),
            )
            stored = self._run_columns(run.location)
            # Snapshots written before they kept the created time read as the lowest one.
            created = CREATED_TS if CREATED_TS in stored else None
            select: list[exp.Expr] = [exp.column(c, quoted=True) for c in [*wanted, EVENT_TS]]
            select.append(exp.alias_(
                exp.column(created, quoted=True) if created else ts_literal(MIN_TS), CREATED_TS, quoted=True
            ))
            if needs_tie:
                order = ORD if view.aggregations and ORD in stored else None
                select.append(exp.alias_(_tie(EVENT_TS, created, order), TIE_KEY, quoted=True))
            parts.append(exp.select(*select).from_(files).where(_in_interval(lo, hi)))
        if remainder:
            src = self.compiler.rows(con, view, wanted).subquery("src")
            select = [exp.column(c, quoted=True) for c in [*wanted, EVENT_TS, CREATED_TS]]
            select.append(exp.alias_(_tie(EVENT_TS, CREATED_TS, ORD), TIE_KEY, quoted=True))
            query = exp.select(*select).from_(src)
            if remainder != [(None, None)]:
                query = query.where(exp.or_(*[_in_interval(lo, hi) for lo, hi in remainder]))
            parts.append(query)
        for run in pushes:
            assert run.location is not None and run.commit_seq is not None
            files = exp.func("read_parquet", exp.Literal.string(str(Path(run.location) / "*.parquet")))
            # Pushed rows come after every source row, and later pushes after earlier ones.
            push_order = exp.Add(
                this=exp.column(ORD, quoted=True),
                expression=exp.Literal.number(_PUSH_ORDER + run.commit_seq * _PUSH_STRIDE),
            )
            select = [exp.column(c, quoted=True) for c in [*wanted, EVENT_TS, CREATED_TS]]
            select.append(exp.alias_(_tie(EVENT_TS, CREATED_TS, push_order), TIE_KEY, quoted=True))
            parts.append(exp.select(*select).from_(files))
        if not parts:  # every run was empty and nothing is left to read: an empty relation
            select = [exp.column(c, quoted=True) for c in [*wanted, EVENT_TS, CREATED_TS]]
            if tie:
                select.append(exp.alias_(_tie(EVENT_TS, CREATED_TS, None), TIE_KEY, quoted=True))
            src = self.compiler.rows(con, view, wanted, with_order=False).subquery("src")
            return exp.select(*select).from_(src).where(exp.false()), tie
        union: exp.Expr = parts[0]
        for part in parts[1:]:
            union = exp.union(union, part, distinct=False)
        return union, needs_tie


def stored_columns(view: FeatureView) -> tuple[str, ...]:
    """The value columns of a view's stored rows: its features, or for an aggregating view the
    columns it aggregates (aggregates are computed when read)."""
    return tuple(f.name for f in view.input_fields) if view.aggregations else view.feature_names


def _read_columns(location: str) -> frozenset[str]:
    """The columns a run's Parquet files hold, from one file's footer."""
    import pyarrow.parquet as pq

    first = next(Path(location).rglob("*.parquet"), None)
    return frozenset() if first is None else frozenset(pq.read_schema(first).names)


def _arange(n: int) -> pa.Array:
    """0..n-1 as an Arrow int64 array (through Polars: ``pa.array`` of a range imports pandas)."""
    import polars as pl

    return pl.int_range(0, n, dtype=pl.Int64, eager=True).to_arrow()


def coverage(runs: list[Run]) -> tuple[list[tuple[Run, datetime | None, datetime | None]], list[Interval]]:
    """Which run serves which time range (newest commit wins), and what no run covers."""
    covered: list[tuple[datetime, datetime]] = []
    pieces: list[tuple[Run, datetime | None, datetime | None]] = []
    for run in sorted(runs, key=lambda r: r.commit_seq or 0, reverse=True):
        if run.window_start is None or run.window_end is None:
            continue
        lo, hi = datetime.fromisoformat(run.window_start), datetime.fromisoformat(run.window_end)
        for a, b in _subtract((lo, hi), covered):
            pieces.append((run, a, b))
        covered = _merge([*covered, (lo, hi)])
    remainder: list[Interval] = []
    cursor: datetime | None = None
    for lo, hi in covered:
        remainder.append((cursor, lo))
        cursor = hi
    remainder.append((cursor, None))
    return pieces, [(a, b) for a, b in remainder if a is None or b is None or a < b]


def _clip(intervals: list[Interval], span: tuple[datetime, datetime] | None) -> list[Interval]:
    """Keep the parts of ``intervals`` that can hold source rows, given the source's [min, max]
    event time (None: unknown, keep everything). Intervals are [lo, hi)."""
    if span is None:
        return intervals
    first, last = span
    kept: list[Interval] = []
    for lo, hi in intervals:
        if (hi is not None and hi <= first) or (lo is not None and lo > last):
            continue
        kept.append((lo, hi))
    return kept


def _merge(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _subtract(
    interval: tuple[datetime, datetime], covered: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    pieces = [interval]
    for c_lo, c_hi in covered:
        nxt = []
        for lo, hi in pieces:
            if c_hi <= lo or c_lo >= hi:
                nxt.append((lo, hi))
                continue
            if lo < c_lo:
                nxt.append((lo, c_lo))
            if c_hi < hi:
                nxt.append((c_hi, hi))
        pieces = nxt
    return pieces


def ts_literal(value: datetime | str) -> exp.Expr:
    text = value if isinstance(value, str) else value.isoformat(sep=" ")
    return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMP"))


def _in_interval(lo: datetime | None, hi: datetime | None) -> exp.Expr:
    col = exp.column(EVENT_TS, quoted=True)
    conds: list[exp.Expr] = []
    if lo is not None:
        conds.append(exp.GTE(this=col, expression=ts_literal(lo)))
    if hi is not None:
        conds.append(exp.LT(this=col, expression=ts_literal(hi)))
    return exp.and_(*conds) if conds else exp.true()


def _tie(event: str, created: str | None, order: str | exp.Expr | None) -> exp.Expr:
    """The ordering struct (event time, created time, ingestion order); greatest wins."""
    if isinstance(order, str):
        order = exp.column(order, quoted=True)
    return exp.Struct(expressions=[
        exp.PropertyEQ(this=exp.to_identifier("e"), expression=exp.column(event, quoted=True)),
        exp.PropertyEQ(
            this=exp.to_identifier("c"),
            expression=exp.column(created, quoted=True) if created else ts_literal(MIN_TS),
        ),
        exp.PropertyEQ(
            this=exp.to_identifier("o"),
            expression=order if order is not None else exp.cast(exp.Literal.number(0), "BIGINT"),
        ),
    ])


def with_tie(rows: exp.Query) -> exp.Select:
    """``rows`` (with ``__event_ts``, ``__created_ts`` and ``__ord``) plus the ``__tie`` struct."""
    return exp.select(exp.Star(), exp.alias_(_tie(EVENT_TS, CREATED_TS, ORD), TIE_KEY, quoted=True)).from_(
        rows.subquery("r"))


def newest(values: Sequence[exp.Expr], ordering: exp.Expr) -> exp.Expr:
    """``arg_max`` of ``values`` packed as a struct (fields f0, f1, ...) by ``ordering``: the values
    of the newest row of a group, taken together. ``unpack`` reads them back."""
    packed = exp.Struct(expressions=[
        exp.PropertyEQ(this=exp.to_identifier(f"f{i}"), expression=value) for i, value in enumerate(values)
    ])
    return exp.func("arg_max", packed, ordering)


def unpack(struct: exp.Expr, names: Sequence[str]) -> list[exp.Expr]:
    """The fields of a ``newest`` struct column, as columns named ``names``."""
    return [
        exp.alias_(exp.Dot(this=struct.copy(), expression=exp.to_identifier(f"f{i}")), name, quoted=True)
        for i, name in enumerate(names)
    ]


def probe_tie(ts_column: exp.Expr) -> exp.Expr:
    """The entity-side struct for the ASOF condition: any row at or before ``ts`` qualifies."""
    return exp.Struct(expressions=[
        exp.PropertyEQ(this=exp.to_identifier("e"), expression=ts_column),
        exp.PropertyEQ(this=exp.to_identifier("c"), expression=ts_literal(_MAX_TS)),
        exp.PropertyEQ(this=exp.to_identifier("o"),
                       expression=exp.cast(exp.Literal.number(2**63 - 1), "BIGINT")),
    ])
