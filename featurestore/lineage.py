"""Column-level lineage: which source and view columns each feature is computed from.

An edge links a column of a view (a ``feature``, or another ``column`` of its rows: join keys,
timestamps, aggregated columns) to a column it is computed from directly: a file source's column,
or a column of a view it reads. SQL is traced by sqlglot; a Polars function cannot be, so its
columns conservatively depend on every input column. A column that reads no input column
(``COUNT(*)``, a constant) depends on its inputs' rows, the column ``*``. Following the edges down
gives a feature's chain to source files; following them up gives every feature a source feeds.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.errors import UnknownObjectError

if TYPE_CHECKING:
    import duckdb
    from sqlglot import exp
    from sqlglot.lineage import Node

    from featurestore.compile import Compiler
    from featurestore.definitions import FeatureView, OnDemandFeatureView
    from featurestore.definitions.transformation import SqlTransformation

FEATURE, COLUMN, SOURCE = "feature", "column", "source"
ROWS = "*"  # the column that stands for a table's rows
POLARS = "polars: not traced column by column"


@dataclass(frozen=True, order=True)
class LineageNode:
    """A column of a view (kind ``feature`` or ``column``; ``owner`` is the view) or of a file
    source (kind ``source``; ``owner`` is the path as written in the definition). The column
    ``*`` stands for the table's rows."""

    kind: str
    owner: str
    column: str

    def __str__(self) -> str:
        return f"{self.owner} : {self.column}" if self.kind == SOURCE else f"{self.owner}:{self.column}"


@dataclass(frozen=True, order=True)
class LineageEdge:
    """``node`` (a view's column) is computed from ``upstream``; ``detail`` says how."""

    node: LineageNode
    upstream: LineageNode
    detail: str = ""


@dataclass(frozen=True)
class LineageTree:
    """A column and what it is computed from, down to source columns. ``detail`` says how the
    parent is computed from this node (empty at the root)."""

    node: LineageNode
    detail: str = ""
    children: tuple[LineageTree, ...] = ()

    def sources(self) -> list[LineageNode]:
        """The source columns at the bottom of the chain, sorted."""
        found = {self.node} if self.node.kind == SOURCE else set()
        for child in self.children:
            found.update(child.sources())
        return sorted(found)

    def render(self) -> str:
        """The chain as an indented tree, one column a line."""
        lines = [str(self.node)]
        self._render_children(lines, "")
        return "\n".join(lines)

    def _render_children(self, lines: list[str], indent: str) -> None:
        for i, child in enumerate(self.children):
            last = i == len(self.children) - 1
            lines.append(f"{indent}{'└── ' if last else '├── '}{child.node}"
                         + (f"   ({child.detail})" if child.detail else ""))
            child._render_children(lines, indent + ("    " if last else "│   "))


# -- computing the edges --------------------------------------------------------------------------

Step = tuple[LineageNode, LineageNode, str]


def compute_lineage(views: Mapping[str, FeatureView], repo_path: Path) -> list[LineageEdge]:
    """The edges of every view, sorted. ``views`` are all the repo's views, with resolved entities
    (as ``load_repo`` gives them).

    Reads the inputs' column names (file metadata, or queries with ``LIMIT 0``; a Polars view
    that others read runs once). Raises the ``DefinitionError``/``SourceError`` of an unreadable input.
    """
    import duckdb

    from featurestore.compile import Compiler

    found: dict[tuple[LineageNode, LineageNode], list[str]] = {}
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        compiler = Compiler(repo_path, views.__getitem__)
        for name in sorted(views):
            for node, upstream, detail in _view_edges(compiler, con, views, views[name]):
                details = found.setdefault((node, upstream), [])
                if detail not in details:
                    details.append(detail)
    finally:
        con.close()
    edges = [LineageEdge(n, u, "; ".join(d for d in details if d)) for (n, u), details in found.items()]
    return sorted(edges, key=edge_order)


def on_demand_edges(views: Mapping[str, OnDemandFeatureView]) -> list[LineageEdge]:
    """Each on-demand feature depends on every input feature of its view (a Python function is
    not traced column by column); request values are not stored columns and have no edge."""
    edges = []
    for odfv in views.values():
        for feature in odfv.feature_names:
            node = LineageNode(FEATURE, odfv.name, feature)
            for proj in odfv.view_inputs:
                for column in proj.features or ():
                    edges.append(LineageEdge(node, LineageNode(FEATURE, proj.view_name, column),
                                             f"on-demand {getattr(odfv.function, 'name', '')}()"))
    return sorted(edges, key=edge_order)


def edge_order(edge: LineageEdge) -> tuple[str, ...]:
    """Sort key: by view, column, then upstream owner and column."""
    return (edge.node.owner, edge.node.column, edge.upstream.owner, edge.upstream.column, edge.upstream.kind)


def _view_node(view: FeatureView, column: str) -> LineageNode:
    return LineageNode(FEATURE if column in view.feature_names else COLUMN, view.name, column)


def _view_edges(compiler: Compiler, con: duckdb.DuckDBPyConnection, views: Mapping[str, FeatureView],
                view: FeatureView) -> Iterator[Step]:
    from featurestore.definitions import FileSource
    from featurestore.definitions.transformation import SqlTransformation, UserFunction, window_label

    inputs = compiler.input_columns(con, view)

    def up(alias: str, column: str) -> LineageNode:
        real = {c.lower(): c for c in inputs[alias]}.get(column.lower(), column)
        src = view.inputs[alias]
        return LineageNode(SOURCE, src.path, real) if isinstance(src, FileSource) else _view_node(views[src], real)

    def me(column: str) -> LineageNode:
        return _view_node(view, column)

    for alias in view.inputs:
        yield me(ROWS), up(alias, ROWS), ""
    for agg in view.aggregations:
        yield me(agg.name), me(agg.column), f"{agg.function} over {window_label(agg.window)}"
    columns = [c for c in dict.fromkeys([*view.join_keys, *(f.name for f in view.input_fields),
                                         view.timestamp_column, view.created_column]) if c]
    transformation = view.transformation
    if isinstance(transformation, SqlTransformation):
        yield from _sql_edges(transformation, inputs, columns, me, up)
    elif isinstance(transformation, UserFunction):
        for column in columns:
            yield from _every_input(me(column), inputs, up, POLARS)
    else:  # the rows of one file or view, as they are
        known = {c.lower() for c in inputs["source"]}
        for column in columns:
            if column.lower() in known:
                yield me(column), up("source", column), ""


def _every_input(node: LineageNode, inputs: dict[str, dict[str, str]], up: Callable[[str, str], LineageNode],
                 detail: str) -> Iterator[Step]:
    for alias, cols in inputs.items():
        for col in cols:
            yield node, up(alias, col), detail


def _sql_edges(sql: SqlTransformation, inputs: dict[str, dict[str, str]], columns: list[str],
               me: Callable[[str], LineageNode], up: Callable[[str, str], LineageNode]) -> Iterator[Step]:
    """Trace each column through the query (CTEs, subqueries, unions) to the inputs' columns."""
    from sqlglot.lineage import lineage
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.scope import build_scope

    aliases = {a.lower(): a for a in inputs}
    schema: dict[str, object] = dict(inputs)
    scope: Any = None
    failure = "not a query sqlglot can follow"
    try:
        tree = qualify(sql.tree, schema=schema, dialect="duckdb", validate_qualify_columns=False, identify=False)
        scope = build_scope(tree)
    except Exception as exc:  # whatever sqlglot cannot follow is traced conservatively below
        failure = _first_line(exc)
    for column in columns:
        root = None
        try:
            root = lineage(column, tree, schema=schema, dialect="duckdb", scope=scope) if scope else None
        except Exception as exc:
            failure = _first_line(exc)
        if root is None:
            yield from _every_input(me(column), inputs, up, f"SQL: not traced ({failure})")
            continue
        for table, col, steps in _leaves(root, ()):
            detail = "SQL: " + _describe(steps)
            if table is not None and table.lower() in aliases:
                yield me(column), up(aliases[table.lower()], col or ROWS), detail
            elif col:  # a column sqlglot could not place (ambiguous): every input that has it
                for alias, cols in inputs.items():
                    if col.lower() in {c.lower() for c in cols}:
                        yield me(column), up(alias, col), detail
            else:
                for alias in inputs:
                    yield me(column), up(alias, ROWS), detail + " (reads no input column)"


def _leaves(node: Node, steps: tuple[exp.Expr, ...]) -> Iterator[tuple[str | None, str | None, list[exp.Expr]]]:
    """(input table, column, expressions on the way) for each path of a sqlglot lineage graph."""
    from sqlglot import exp

    if isinstance(node.expression, exp.Table | exp.Placeholder):
        column = exp.to_column(node.name, dialect="duckdb").name
        yield (node.expression.name if isinstance(node.expression, exp.Table) else None), column, list(steps)
        return
    expr = node.expression.this if isinstance(node.expression, exp.Alias) else node.expression
    if not node.downstream:
        yield None, None, [*steps, expr]
    for child in node.downstream:
        yield from _leaves(child, (*steps, expr))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _describe(steps: list[exp.Expr]) -> str:
    """The expressions that compute the column, outermost first; plain column references are left
    out unless nothing else is there."""
    from sqlglot import exp

    texts = list(dict.fromkeys(s.sql("duckdb") for s in steps if not isinstance(s, exp.Column | exp.Star)))
    if not texts and steps:
        texts = [steps[-1].sql("duckdb")]
    return " <- ".join(texts)


# -- reading the edges ----------------------------------------------------------------------------


def find_node(edges: Iterable[LineageEdge], target: str | LineageNode) -> LineageNode:
    """The view column named ``"view:column"`` (or the node itself), or ``UnknownObjectError``."""
    if isinstance(target, LineageNode):
        return target
    view, _, column = target.partition(":")
    nodes = {e.node for e in edges if e.node.owner == view}
    for node in nodes:
        if node.column == column:
            return node
    features = sorted(n.column for n in nodes if n.kind == FEATURE)
    if not nodes:
        raise UnknownObjectError(f"no lineage for feature view {view!r}; name a feature as view:feature")
    raise UnknownObjectError(f"no lineage for {target!r}; the view's features are {features}")


def chain(edges: Iterable[LineageEdge], target: str | LineageNode) -> LineageTree:
    """What ``target`` (``"view:feature"``) is computed from, down to source files and columns."""
    edges = list(edges)
    below: dict[LineageNode, list[LineageEdge]] = {}
    for edge in edges:
        below.setdefault(edge.node, []).append(edge)

    def build(node: LineageNode, detail: str, path: frozenset[LineageNode]) -> LineageTree:
        if node in path:  # views cannot read each other in a cycle, but do not loop if the edges do
            return LineageTree(node, detail)
        children = [build(e.upstream, e.detail, path | {node}) for e in sorted(below.get(node, ()), key=edge_order)]
        return LineageTree(node, detail, tuple(children))

    return build(find_node(edges, target), "", frozenset())


def dependents(edges: Iterable[LineageEdge], source: str, repo_path: Path | None = None, *,
               column: str | None = None) -> list[str]:
    """Every feature (``"view:feature"``, sorted) that depends on the file source ``source``,
    directly or through views built on views; only through ``column`` if given.

    ``source`` matches a source's path as written, or (resolved against ``repo_path``, else the
    current folder) the same file, a file in its directory or glob.
    """
    edges = list(edges)
    above: dict[LineageNode, list[LineageNode]] = {}
    for edge in edges:
        above.setdefault(edge.upstream, []).append(edge.node)
    root = repo_path or Path.cwd()
    wanted = {_resolve(source, root), _resolve(source, Path.cwd())}
    todo = [
        n for n in above
        if n.kind == SOURCE and (column is None or n.column.lower() == column.lower())
        and (n.owner == source or _covers(_resolve(n.owner, root), wanted))
    ]
    seen = set(todo)
    while todo:
        for node in above.get(todo.pop(), ()):
            if node not in seen:
                seen.add(node)
                todo.append(node)
    return sorted({str(n) for n in seen if n.kind == FEATURE})


def _resolve(path: str, base: Path) -> str:
    """The absolute path, relative paths starting at ``base`` (as sources' do at the repo root)."""
    return os.path.realpath(base / os.path.expanduser(path))


def _covers(src: str, wanted: set[str]) -> bool:
    """True if a source path (file, directory or glob) is or contains one of the wanted paths."""
    return any(
        path == src or path.startswith(src.rstrip(os.sep) + os.sep)
        or (any(ch in src for ch in "*?[") and fnmatch.fnmatchcase(path, src))
        for path in wanted
    )
