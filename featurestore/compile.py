"""Compile a feature view into the query that produces its rows.

A view's *rows* are what its features are read from: join keys, value columns, and the internal
columns ``__event_ts`` (naive UTC), ``__created_ts`` and ``__ord`` (ingestion order, for exact
ties). A plain view's rows are its file source's rows. A transformed view's rows are its SQL (kept
as a sqlglot tree: the sources' table names are replaced by subqueries over their files, or by the
compiled rows of the views they name) or the output of its Polars function.

Exact ties of transformed rows (same keys, event and created time) cannot follow file order, which
a query does not keep: they go to the greatest hash of the row's values, which is deterministic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlglot import exp

from featurestore.definitions import FeatureView, FileSource
from featurestore.definitions.transformation import SqlTransformation, UserFunction
from featurestore.errors import DefinitionError, SourceError
from featurestore.offline.sources import (
    CREATED_TS,
    EVENT_TS,
    ORD,
    register_csv,
    resolve_files,
    source_relation,
    timestamp_columns,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

ViewLookup = Callable[[str], FeatureView]


class Compiler:
    """Compiles views of one repo (``lookup`` finds the views that others read)."""

    def __init__(self, repo_path: Path, lookup: ViewLookup, *, source_tables: bool = False) -> None:
        self.repo_path = repo_path
        self.lookup = lookup
        # For other engines (Spark): file sources are tables named by ``source_table_name``, which
        # the engine registers, instead of DuckDB's read_parquet.
        self.source_tables = source_tables
        self._polars_done: set[tuple[int, str]] = set()  # (connection, table): run each function once

    # -- rows of a view --------------------------------------------------------------------------

    def rows(
        self, con: duckdb.DuckDBPyConnection | None, view: FeatureView, columns: Sequence[str], *,
        with_order: bool = True,
    ) -> exp.Select:
        """The view's rows: ``columns`` plus ``__event_ts``, ``__created_ts`` and (``with_order``)
        ``__ord``. ``con`` is needed for CSV sources and Polars transformations (they register
        Arrow data in it); ``None`` compiles Parquet/SQL only, for display."""
        rows = self._rows(con, view, columns, with_order=with_order)
        return forward_filled(rows, view, columns, with_order=with_order) if view.forward_fill else rows

    def _rows(
        self, con: duckdb.DuckDBPyConnection | None, view: FeatureView, columns: Sequence[str], *, with_order: bool,
    ) -> exp.Select:
        source = view.file_source
        if source is not None and self.source_tables:
            table = exp.select(exp.Star()).from_(exp.to_table(source_table_name(source, view.name, "source")))
            return _rows_of(table, view, columns, with_order=with_order)
        if source is not None:
            return source_relation(con, source, self.repo_path, columns, with_order=with_order)
        return self._transformed(con, view, columns, with_order=with_order, seen=(view.name,))

    def _transformed(
        self, con: duckdb.DuckDBPyConnection | None, view: FeatureView, columns: Sequence[str], *,
        with_order: bool, seen: tuple[str, ...],
    ) -> exp.Select:
        return _rows_of(self.output_query(con, view, seen=seen), view, columns, with_order=with_order)

    def output_query(
        self, con: duckdb.DuckDBPyConnection | None, view: FeatureView, *, seen: tuple[str, ...] = ()
    ) -> exp.Query:
        """The transformation's output with user-visible columns (no internal ones)."""
        transformation = view.transformation
        if isinstance(transformation, UserFunction):
            if con is None:
                raise DefinitionError(
                    "a Polars transformation has no SQL form; 'featurestore compile' prints its plan",
                    obj=f"feature view '{view.name}'",
                )
            return self._polars_output(con, view, transformation, seen)
        tables = {alias: self.input_table(con, view, alias, seen=seen) for alias in view.inputs}
        if transformation is None:  # a view that reads one other view as it is
            return exp.select(exp.Star()).from_(tables["source"].subquery("source"))
        assert isinstance(transformation, SqlTransformation)
        return substitute_tables(transformation.tree, tables, view)

    def input_table(
        self, con: duckdb.DuckDBPyConnection | None, view: FeatureView, alias: str, *, seen: tuple[str, ...] = ()
    ) -> exp.Select:
        """One input of a view as a SELECT of its user-visible columns."""
        src = view.inputs[alias]
        if isinstance(src, FileSource) and self.source_tables:
            return exp.select(exp.Star()).from_(exp.to_table(source_table_name(src, view.name, alias)))
        if isinstance(src, FileSource):
            return file_table(con, src, self.repo_path)
        if src in seen:
            raise DefinitionError(
                f"views read each other in a cycle: {' -> '.join([*seen, src])}", obj=f"feature view '{view.name}'"
            )
        upstream = self.lookup(src)
        columns = [*upstream.join_keys, *upstream.feature_names]
        if upstream.aggregations:
            raise DefinitionError(
                f"reads view {src!r}, which aggregates: read its source instead (aggregates depend on "
                "the time they are asked for)", obj=f"feature view '{view.name}'",
            )
        rows = self.rows(con, upstream, columns, with_order=False) if upstream.file_source else self._transformed(
            con, upstream, columns, with_order=False, seen=(*seen, src)
        )
        select: list[exp.Expr] = [exp.column(c, "r", quoted=True) for c in dict.fromkeys(columns)]
        select.append(exp.alias_(exp.column(EVENT_TS, "r", quoted=True), upstream.timestamp_column, quoted=True))
        if upstream.created_column:
            select.append(exp.alias_(exp.column(CREATED_TS, "r", quoted=True), upstream.created_column, quoted=True))
        return exp.select(*select).from_(rows.subquery("r"))

    def input_columns(self, con: duckdb.DuckDBPyConnection, view: FeatureView) -> dict[str, dict[str, str]]:
        """Each input's column names and DuckDB types, by the name the transformation uses (a query
        with no rows: reads file metadata, runs a Polars input once)."""
        columns = {}
        for alias in view.inputs:
            rel = con.sql(self.input_table(con, view, alias, seen=(view.name,)).limit(0).sql("duckdb"))
            columns[alias] = dict(zip(rel.columns, [str(t) for t in rel.types], strict=True))
        return columns

    def _polars_output(
        self, con: duckdb.DuckDBPyConnection, view: FeatureView, function: UserFunction, seen: tuple[str, ...]
    ) -> exp.Query:
        import polars as pl

        name = "__polars_" + hashlib.sha256(f"{view.name}:{function.source}".encode()).hexdigest()[:16]
        if (id(con), name) in self._polars_done:
            return exp.select(exp.Star()).from_(exp.to_table(name, quoted=True))
        frames = {}
        for alias in view.inputs:
            table = con.sql(self.input_table(con, view, alias, seen=seen).sql("duckdb")).to_arrow_table()
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            frames[alias] = frame.lazy()
        try:
            result = function(frames["source"]) if list(frames) == ["source"] else function(**frames)
            if isinstance(result, list | tuple):
                if len(frames) != 1:
                    raise TypeError("a list of expressions needs exactly one source to add them to")
                result = next(iter(frames.values())).with_columns(result)
            if isinstance(result, pl.DataFrame):
                result = result.lazy()
            if not isinstance(result, pl.LazyFrame):
                raise TypeError(f"returned {type(result).__name__}, expected a LazyFrame or a list of expressions")
            output = result.collect().to_arrow()
        except DefinitionError:
            raise
        except Exception as exc:
            raise DefinitionError(
                f"the Polars transformation {function.name!r} failed: {type(exc).__name__}: {exc}",
                obj=f"feature view '{view.name}'", field="transform",
            ) from None
        # A table in the database (not a connection-local view), so cursors see it too.
        con.register(name + "_in", output)
        con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM "{name}_in"')  # names: hex digits
        con.unregister(name + "_in")
        self._polars_done.add((id(con), name))
        return exp.select(exp.Star()).from_(exp.to_table(name, quoted=True))

    # -- schemas ---------------------------------------------------------------------------------

    def output_schema(self, con: duckdb.DuckDBPyConnection, view: FeatureView) -> pa.Schema:
        """Column names and types of the view's rows before any internal column is added."""
        if view.file_source is not None:
            from featurestore.offline.sources import source_schema

            return source_schema(view.file_source, self.repo_path)
        query = self.output_query(con, view, seen=(view.name,))
        try:
            return con.sql(query.limit(0).sql("duckdb")).to_arrow_table().schema
        except Exception as exc:  # duckdb.Error: binder or type errors name the column
            raise DefinitionError(
                f"the transformation does not run on its sources: {_first_line(exc)}",
                file=view.location.file, line=view.location.line, obj=f"feature view '{view.name}'",
            ) from None


def _rows_of(output: exp.Query, view: FeatureView, columns: Sequence[str], *, with_order: bool) -> exp.Select:
    """Rows with the internal columns, over a query of user-visible columns. Ingestion order is a
    hash of the row's values: a query keeps no file order."""
    wanted = [c for c in dict.fromkeys(columns) if c != view.timestamp_column]
    select: list[exp.Expr] = [exp.column(c, "t", quoted=True) for c in wanted]
    created = view.created_column
    select += timestamp_columns(exp.column(view.timestamp_column, "t", quoted=True),
                                None if created is None else exp.column(created, "t", quoted=True))
    if with_order:
        values: list[exp.Expr] = [exp.column(c, "t", quoted=True) for c in wanted] or [exp.Literal.number(0)]
        digest = exp.BitwiseRightShift(this=exp.func("hash", *values), expression=exp.Literal.number(1))
        select.append(exp.alias_(exp.cast(digest, "BIGINT"), ORD, quoted=True))
    return exp.select(*select).from_(output.subquery("t"))


def forward_filled(rows: exp.Select, view: FeatureView, columns: Sequence[str], *, with_order: bool) -> exp.Select:
    """``rows`` with the view's forward-filled features: a null takes the entity's previous
    non-null value (by event time, created time, ingestion order) if at most ttl older."""
    from featurestore.offline.aggregate import interval

    order = [EVENT_TS, CREATED_TS, *([ORD] if with_order else [])]
    keys = [exp.column(k, "r", quoted=True) for k in view.join_keys]
    event = exp.column(EVENT_TS, "r", quoted=True)
    select: list[exp.Expr] = []
    for column in [*dict.fromkeys(columns), *order]:
        value: exp.Expr = exp.column(column, "r", quoted=True)
        if column in view.forward_fill:
            tagged = exp.Case(ifs=[exp.If(this=exp.Not(this=exp.Is(this=value.copy(), expression=exp.Null())),
                                          true=exp.Struct(expressions=[
                                              exp.PropertyEQ(this=exp.to_identifier("t"), expression=event.copy()),
                                              exp.PropertyEQ(this=exp.to_identifier("v"), expression=value.copy()),
                                          ]))])
            previous = exp.Window(
                this=exp.IgnoreNulls(this=exp.LastValue(this=tagged)),
                partition_by=[k.copy() for k in keys],
                order=exp.Order(expressions=[exp.Ordered(this=exp.column(c, "r", quoted=True)) for c in order]),
                spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING",
                                    end=exp.Literal.number(1), end_side="PRECEDING"),
            )
            fresh: exp.Expr = exp.true()
            if view.ttl is not None:
                fresh = exp.GTE(this=exp.Dot(this=previous.copy(), expression=exp.to_identifier("t")),
                                expression=exp.Sub(this=event.copy(), expression=interval(view.ttl)))
            filled = exp.Case(ifs=[exp.If(this=fresh, true=exp.Dot(this=previous, expression=exp.to_identifier("v")))])
            value = exp.func("coalesce", value, filled)
        select.append(exp.alias_(value, column, quoted=True))
    return exp.select(*select).from_(rows.subquery("r"))


def source_table_name(source: FileSource, view: str, alias: str) -> str:
    """The table a file source is read from by engines other than DuckDB."""
    return source.name or f"{view}__{alias}"


def file_table(con: duckdb.DuckDBPyConnection | None, source: FileSource, repo_path: Path) -> exp.Select:
    """Every column of a file source, as stored (timestamps too)."""
    files = resolve_files(source, repo_path)
    if source.format == "parquet":
        table: exp.Expr = exp.func(
            "read_parquet",
            exp.Array(expressions=[exp.Literal.string(f) for f in files]),
            exp.EQ(this=exp.column("union_by_name"), expression=exp.true()),
        )
        return exp.select(exp.Star()).from_(table)
    if con is None:
        raise SourceError(f"source {source.path!r}: CSV sources are read at run time; compile with a connection")
    name = register_csv(con, source, files)
    return exp.select(exp.Star(except_=[exp.column(ORD, quoted=True)])).from_(exp.to_table(name, quoted=True))


def substitute_tables(tree: exp.Query, tables: dict[str, exp.Select], view: FeatureView) -> exp.Query:
    """Replace the query's references to the view's inputs by their SELECTs. A table that is not
    an input (nor a CTE of the query) is an error naming the inputs."""
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    unknown: list[str] = []

    def replace(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            return node
        if node.args.get("db") or node.args.get("catalog"):
            unknown.append(node.sql("duckdb"))
            return node
        name = node.name
        if name in ctes:
            return node
        if name not in tables:
            unknown.append(name)
            return node
        return exp.Subquery(this=tables[name].copy(), alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name)))

    out = tree.transform(replace)
    if unknown:
        raise view.error(
            f"the SQL reads unknown table(s) {sorted(set(unknown))}; the view's sources are {sorted(tables)}"
            + (" (a single source=... is the table 'source')" if list(tables) == ["source"] else ""),
            field="sql",
        )
    assert isinstance(out, exp.Query)
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- what `featurestore compile` prints -----------------------------------------------------------

DIALECTS = ("duckdb", "spark")


@dataclass(frozen=True)
class CompiledView:
    """A view's compiled form, for people: the query of its rows and the training-set join."""

    view: str
    dialect: str
    rows_sql: str | None  # None for a Polars transformation (see polars_plan)
    training_sql: str
    polars_plan: str | None = None
    tables: dict[str, str] = field(default_factory=dict)  # table -> source path, for non-DuckDB engines

    def explain(self) -> str:
        lines = [f"-- feature view {self.view}: compiled for {self.dialect}"]
        if self.tables:
            lines.append("-- register these tables from the source files first:")
            lines += [f"--   {name} = {path}" for name, path in self.tables.items()]
        if self.polars_plan is not None:
            lines += ["-- rows: Polars plan", *[f"--   {line}" for line in self.polars_plan.splitlines()]]
        if self.rows_sql is not None:
            lines += ["-- rows of the view", self.rows_sql + ";"]
        lines += ["-- training set: point-in-time join with the entity rows (__entity_rows: keys, __ts, __row_id)",
                  self.training_sql + ";"]
        return "\n".join(lines)


def compile_view(
    view: FeatureView, lookup: ViewLookup, repo_path: Path, *, dialect: str = "duckdb", portable: bool | None = None,
) -> CompiledView:
    """Compile ``view`` for ``dialect``: ``duckdb`` (what runs here) or ``spark`` (the same trees
    transpiled by sqlglot, with a portable point-in-time join instead of ``ASOF JOIN``, and file
    sources as tables). ``portable`` forces the portable forms for DuckDB too."""
    from featurestore.offline.retrieval import ViewRequest, aggregate_query, join_query
    from featurestore.offline.store import stored_columns, with_tie

    if dialect not in DIALECTS:
        raise DefinitionError(f"unknown dialect {dialect!r}; use one of {', '.join(DIALECTS)}")
    portable = dialect != "duckdb" if portable is None else portable
    compiler = Compiler(repo_path, lookup, source_tables=portable)
    columns = [*view.join_keys, *stored_columns(view)]
    plan = None
    if isinstance(view.transformation, UserFunction):
        plan = polars_plan(view, compiler)
        placeholder = exp.select(exp.Star()).from_(exp.to_table(f"{view.name}__polars_output"))
        rows = _rows_of(placeholder, view, columns, with_order=True)
    else:
        rows = compiler.rows(None, view, columns)
    request = ViewRequest(view, view.feature_names, view.feature_names)
    training = aggregate_query(request, with_tie(rows)) if view.aggregations else join_query(
        request, rows if portable else with_tie(rows), needs_tie=True, strategy="portable" if portable else "asof")

    def render(tree: exp.Expr) -> str:
        return tree.sql(dialect, pretty=True).replace(f"{repo_path.resolve()}/", "")

    tables = {}
    if portable:
        for table in rows.find_all(exp.Table):
            src = _source_named(view, table.name, lookup)
            if src is not None:
                tables[table.name] = src.path
    return CompiledView(view.name, dialect, None if plan is not None else render(rows), render(training), plan,
                        tables)


def polars_plan(view: FeatureView, compiler: Compiler) -> str:
    """The optimized Polars plan of a view's function over lazily scanned inputs."""
    import duckdb
    import polars as pl

    function = view.transformation
    assert isinstance(function, UserFunction)
    frames: dict[str, pl.LazyFrame] = {}
    con = duckdb.connect()
    try:
        for alias, src in view.inputs.items():
            if isinstance(src, FileSource):
                files = resolve_files(src, compiler.repo_path)
                frames[alias] = pl.scan_parquet(files) if src.format == "parquet" else pl.scan_csv(files)
            else:
                local = Compiler(compiler.repo_path, compiler.lookup)
                table = con.sql(local.input_table(con, view, alias).sql("duckdb")).to_arrow_table()
                frame = pl.from_arrow(table)
                assert isinstance(frame, pl.DataFrame)
                frames[alias] = frame.lazy()
    finally:
        con.close()
    out = function(frames["source"]) if list(frames) == ["source"] else function(**frames)
    if isinstance(out, list | tuple):
        out = next(iter(frames.values())).with_columns(out)
    lazy = out.lazy() if isinstance(out, pl.DataFrame) else out
    return str(lazy.explain()).replace(f"{compiler.repo_path.resolve()}/", "")


def _source_named(view: FeatureView, table: str, lookup: ViewLookup, depth: int = 0) -> FileSource | None:
    for alias, src in view.inputs.items():
        if isinstance(src, FileSource) and source_table_name(src, view.name, alias) == table:
            return src
        if isinstance(src, str) and depth < 20:
            found = _source_named(lookup(src), table, lookup, depth + 1)
            if found is not None:
                return found
    return None
