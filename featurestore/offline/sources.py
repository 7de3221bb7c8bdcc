"""Reading data sources: resolve files, inspect schemas, expose rows to DuckDB.

Every source becomes a DuckDB relation with the same internal columns, so the rest of the engine
does not care where rows came from:

* ``__event_ts``: the event timestamp as a naive UTC ``TIMESTAMP`` (microseconds);
* ``__created_ts``: the created timestamp (or the lowest timestamp when the source has none);
* ``__ord``: ingestion order, files in path order and rows in file order (later wins ties).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlglot import exp

from featurestore.definitions import FileSource
from featurestore.errors import SourceError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

EVENT_TS = "__event_ts"
CREATED_TS = "__created_ts"
ORD = "__ord"
MIN_TS = "0001-01-01 00:00:00"
# Row numbers within a file stay below 2**40; the file's position takes the bits above.
_FILE_SHIFT = 1 << 40
_EXTENSIONS = {"parquet": (".parquet", ".pq"), "csv": (".csv", ".csv.gz")}


def resolve_files(source: FileSource, repo_path: Path) -> list[str]:
    """The source's files in path order (the order that breaks exact ties)."""
    raw = os.path.expanduser(source.path)
    path = raw if os.path.isabs(raw) else str(repo_path / raw)
    if any(ch in path for ch in "*?["):
        files = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
    elif os.path.isdir(path):
        exts = _EXTENSIONS[source.format]
        files = sorted(
            os.path.join(d, f)
            for d, _, names in os.walk(path)
            for f in names
            if f.lower().endswith(exts) and not f.startswith((".", "_"))
        )
    elif os.path.isfile(path):
        files = [path]
    else:
        files = []
    if not files:
        raise SourceError(
            f"source {source.path!r} ({source.location}): no {source.format} files found at {path}; "
            "check the path (relative paths start at the repo root) or generate the data first"
        )
    return files


def source_schema(source: FileSource, repo_path: Path) -> pa.Schema:
    """Column names and Arrow types of a source, read from file metadata (no data scan)."""
    import pyarrow as pa

    files = resolve_files(source, repo_path)
    try:
        if source.format == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(files[0])
            return pa.schema([schema.field(i).remove_metadata() for i in range(len(schema))])
        import pyarrow.csv as pcsv

        with pcsv.open_csv(files[0]) as reader:
            return reader.schema
    except (OSError, pa.ArrowInvalid) as exc:
        raise SourceError(f"source {source.path!r}: cannot read {files[0]}: {exc}") from None


def timestamp_columns(event: exp.Column, created: exp.Column | None) -> list[exp.Expr]:
    """``__event_ts`` and ``__created_ts`` as naive UTC ``TIMESTAMP``s from a row's timestamp
    columns, whatever their stored form; a missing created time is the lowest, so it loses ties."""
    timestamp = exp.DataType.build("TIMESTAMP")
    lowest = exp.cast(exp.Literal.string(MIN_TS), timestamp)
    created_ts = lowest if created is None else exp.func("coalesce", exp.cast(created, timestamp), lowest)
    return [exp.alias_(exp.cast(event, timestamp), EVENT_TS, quoted=True),
            exp.alias_(created_ts, CREATED_TS, quoted=True)]


def source_relation(
    con: duckdb.DuckDBPyConnection | None,
    source: FileSource,
    repo_path: Path,
    columns: Sequence[str],
    *,
    with_order: bool = True,
) -> exp.Select:
    """A SELECT over the source giving ``columns`` plus the internal timestamp/order columns.

    Parquet is read by DuckDB directly; CSV files are read with Arrow, one file at a time, so
    row order within a file is exact.
    """
    files = resolve_files(source, repo_path)
    wanted = [c for c in dict.fromkeys(columns) if c not in (source.timestamp_field,)]
    select: list[exp.Expr] = [exp.column(c, quoted=True) for c in wanted]
    created = source.created_timestamp_column
    select += timestamp_columns(exp.column(source.timestamp_field, quoted=True),
                                None if created is None else exp.column(created, quoted=True))

    if source.format == "parquet":
        table: exp.Expr = exp.func(
            "read_parquet",
            exp.Array(expressions=[exp.Literal.string(f) for f in files]),
            exp.EQ(this=exp.column("file_row_number"), expression=exp.true()),
            exp.EQ(this=exp.column("union_by_name"), expression=exp.true()),
        )
        if with_order:
            # file_index is the file's position in the (path-sorted) list DuckDB was given.
            order = exp.Add(
                this=exp.Mul(
                    this=exp.cast(exp.column("file_index"), "BIGINT"), expression=exp.Literal.number(_FILE_SHIFT)
                ),
                expression=exp.column("file_row_number"),
            )
            select.append(exp.alias_(order, ORD, quoted=True))
        return exp.select(*select).from_(table)

    if con is None:
        raise SourceError(f"source {source.path!r}: CSV sources are read at run time, with a connection")
    name = register_csv(con, source, files)
    if with_order:
        select.append(exp.alias_(exp.column(ORD, quoted=True), ORD, quoted=True))
    return exp.select(*select).from_(exp.to_table(name, quoted=True))


def source_stats(source: FileSource, repo_path: Path) -> tuple[int, datetime, datetime] | None:
    """Row count and (min, max) event time of a Parquet source from file statistics, times as
    naive UTC; None when unknown (CSV, or a file without statistics). Reads footers only."""
    if source.format != "parquet":
        return None
    import pyarrow.parquet as pq

    from featurestore.timeutil import to_naive_utc

    lo: datetime | None = None
    hi: datetime | None = None
    rows = 0
    for file in resolve_files(source, repo_path):
        meta = pq.read_metadata(file)
        rows += meta.num_rows
        names = meta.schema.names
        if source.timestamp_field not in names:
            return None
        index = names.index(source.timestamp_field)
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            if group.num_rows == 0:
                continue
            stats = group.column(index).statistics
            if stats is None or not stats.has_min_max or not isinstance(stats.min, datetime | date):
                return None
            a, b = to_naive_utc(stats.min), to_naive_utc(stats.max)
            lo = a if lo is None else min(lo, a)
            hi = b if hi is None else max(hi, b)
    return None if lo is None or hi is None else (rows, lo, hi)


def register_csv(con: duckdb.DuckDBPyConnection, source: FileSource, files: list[str]) -> str:
    import polars as pl
    import pyarrow as pa
    import pyarrow.csv as pcsv

    tables = []
    for i, file in enumerate(files):
        try:
            table = pcsv.read_csv(file)
        except (OSError, pa.ArrowInvalid) as exc:
            raise SourceError(f"source {source.path!r}: cannot read {file}: {exc}") from None
        start = i * _FILE_SHIFT
        order = pl.int_range(start, start + table.num_rows, dtype=pl.Int64, eager=True).to_arrow()
        tables.append(table.append_column(ORD, order))
    combined = pa.concat_tables(tables, promote_options="permissive")
    name = f"__csv_{abs(hash((source.path, tuple(files)))):x}"
    con.register(name, combined)
    return name
