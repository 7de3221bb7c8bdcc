"""Loading a feature repo: import its Python files, collect definitions, check them together.

Each definition checks itself when constructed; this module checks what only the whole repo can
tell: names that repeat, references to unknown entities or views, and definitions that do not match
their source's real columns and types. Every problem is reported at once, not only the first.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurestore.definitions import Definition, Entity, FeatureService, FeatureView, OnDemandFeatureView
from featurestore.errors import DefinitionError, FeatureStoreError, RepoError, SourceError

_DEFINITION_TYPES = (Entity, FeatureView, FeatureService, OnDemandFeatureView)
# Folders never imported: virtualenvs, caches, tests and the repo's own data.
_SKIP_DIRS = {"__pycache__", "venv", "env", "site-packages", "node_modules", "tests", "test", "data"}


@dataclass
class RepoContents:
    """The definitions of a repo, by name."""

    entities: dict[str, Entity] = field(default_factory=dict)
    feature_views: dict[str, FeatureView] = field(default_factory=dict)
    feature_services: dict[str, FeatureService] = field(default_factory=dict)
    on_demand_views: dict[str, OnDemandFeatureView] = field(default_factory=dict)

    def all(self) -> Iterator[Definition]:
        yield from self.entities.values()
        yield from self.feature_views.values()
        yield from self.on_demand_views.values()
        yield from self.feature_services.values()

    def by_kind(self, kind: str) -> dict[str, Definition]:
        return {
            Entity.kind: self.entities,
            FeatureView.kind: self.feature_views,
            FeatureService.kind: self.feature_services,
            OnDemandFeatureView.kind: self.on_demand_views,
        }[kind]  # type: ignore[return-value]


def repo_python_files(repo_path: Path) -> list[Path]:
    """The repo's definition files, in a stable order."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(repo_path):
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith((".", "_")) and d not in _SKIP_DIRS
            and not (Path(dirpath) / d / "pyvenv.cfg").exists()
        )
        for name in sorted(filenames):
            if name.endswith(".py") and not name.startswith(("test_", ".", "_")) and name != "conftest.py":
                found.append(Path(dirpath) / name)
    return found


def _module_name(repo_path: Path, file: Path) -> str:
    rel = file.relative_to(repo_path).with_suffix("")
    return ".".join(rel.parts)


def import_definitions(repo_path: Path) -> list[Definition]:
    """Import every definition file and return the definitions found at module level."""
    repo_path = repo_path.resolve()
    files = repo_python_files(repo_path)
    names = [_module_name(repo_path, f) for f in files]
    before = set(sys.modules)
    found: list[Definition] = []
    seen: set[int] = set()
    sys.path.insert(0, str(repo_path))
    importlib.invalidate_caches()
    try:
        for file, module_name in zip(files, names, strict=True):
            try:
                module = importlib.import_module(module_name)
            except FeatureStoreError:
                raise
            except SyntaxError as exc:
                raise DefinitionError(
                    f"syntax error: {exc.msg}", file=exc.filename or str(file), line=exc.lineno
                ) from None
            except Exception as exc:
                raise DefinitionError(
                    f"importing the file failed: {type(exc).__name__}: {exc}",
                    file=str(file), line=_traceback_line(exc, file),
                ) from exc
            for value in list(vars(module).values()):
                if isinstance(value, _DEFINITION_TYPES) and id(value) not in seen:
                    seen.add(id(value))
                    found.append(value)
                    if isinstance(value, FeatureView):
                        for ent in value.entity_objects:
                            if id(ent) not in seen:
                                seen.add(id(ent))
                                found.append(ent)
    finally:
        if sys.path and sys.path[0] == str(repo_path):
            sys.path.pop(0)
        # Forget the repo's own modules (packages included), so the next load, of this repo after
        # an edit or of another repo with the same file names, imports afresh.
        for mod in set(sys.modules) - before:
            origin = getattr(sys.modules[mod], "__file__", None) or ""
            paths = list(getattr(sys.modules[mod], "__path__", []) or [])
            if any(str(p).startswith(str(repo_path)) for p in [origin, *paths] if p):
                del sys.modules[mod]
    return found


def _traceback_line(exc: BaseException, file: Path) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == file.resolve():
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def load_repo(repo_path: Path, *, check_sources: bool = True) -> RepoContents:
    """Import, collect and validate a repo. Raises ``RepoError`` listing every problem."""
    definitions = import_definitions(repo_path)
    return build_contents(definitions, repo_path, check_sources=check_sources)


def build_contents(
    definitions: list[Definition], repo_path: Path, *, check_sources: bool = True
) -> RepoContents:
    """Check definitions together and resolve references between them."""
    problems: list[str] = []
    contents = RepoContents()
    for d in definitions:
        table = contents.by_kind(d.kind)
        other = table.get(d.name)
        if other is None:
            table[d.name] = d
        elif other != d:
            problems.append(
                f"{d.kind.replace('_', ' ')} name {d.name!r} is defined twice: at {other.location} and at "
                f"{d.location}; names must be unique per kind"
            )

    # Resolve entity names to Entity objects, so every view knows its join keys.
    for name, view in list(contents.feature_views.items()):
        resolved: list[Entity] = []
        for ent in view.entities:
            ent_name = ent.name if isinstance(ent, Entity) else ent
            known = contents.entities.get(ent_name)
            if known is None:
                problems.append(
                    f"{view.location}: feature view {name!r} uses unknown entity {ent_name!r}; "
                    f"known entities: {sorted(contents.entities) or 'none'}"
                )
                continue
            resolved.append(known)
        if len(resolved) == len(view.entities):
            contents.feature_views[name] = dataclasses.replace(view, entities=resolved)

    for name, view in contents.feature_views.items():
        keys = view.join_keys
        if len(set(keys)) != len(keys):
            problems.append(f"{view.location}: feature view {name!r} has repeated join keys {list(keys)}")
        for upstream in view.upstream_views:
            if upstream not in contents.feature_views:
                problems.append(
                    f"{view.location}: feature view {name!r} reads unknown feature view {upstream!r}; known "
                    f"views: {sorted(contents.feature_views)}"
                )
    if not problems:
        problems.extend(_link_upstream(contents))
    if check_sources:
        problems.extend(_check_views(contents, repo_path))

    for name, odfv in contents.on_demand_views.items():
        if name in contents.feature_views:
            problems.append(f"{odfv.location}: on-demand view {name!r} has the name of a feature view")
        for proj in odfv.view_inputs:
            source = contents.feature_views.get(proj.view_name)
            if source is None:
                problems.append(
                    f"{odfv.location}: on-demand view {name!r} reads unknown feature view {proj.view_name!r}; "
                    f"known views: {sorted(contents.feature_views)}"
                )
                continue
            unknown = [f for f in proj.features or () if f not in source.feature_names]
            if unknown:
                problems.append(
                    f"{odfv.location}: on-demand view {name!r} reads unknown feature(s) {unknown} of "
                    f"{proj.view_name!r}; it has {list(source.feature_names)}"
                )

    for name, service in contents.feature_services.items():
        for proj in service.projections:
            target: FeatureView | OnDemandFeatureView | None = (
                contents.feature_views.get(proj.view_name) or contents.on_demand_views.get(proj.view_name)
            )
            if target is None:
                problems.append(
                    f"{service.location}: feature service {name!r} uses unknown feature view "
                    f"{proj.view_name!r}; known views: {sorted(contents.feature_views) or 'none'}"
                )
                continue
            for feat in proj.features or ():
                if feat not in target.feature_names:
                    problems.append(
                        f"{service.location}: feature service {name!r} uses unknown feature "
                        f"'{proj.view_name}:{feat}'; the view has {list(target.feature_names)}"
                    )
            served = {f.name: f.dtype for f in target.features if f.name in (proj.features or target.feature_names)}
            for ref, how in service.imputation.items():
                view_name, feat = ref.split(":")
                if view_name != proj.view_name:
                    continue
                if feat not in served:
                    problems.append(
                        f"{service.location}: feature service {name!r} imputes {ref!r}, which it does not "
                        f"serve; it serves {[f'{view_name}:{f}' for f in served]}"
                    )
                elif (problem := how.problem(ref, served[feat])) is not None:
                    problems.append(f"{service.location}: feature service {name!r}: {problem}")
    if problems:
        raise RepoError(problems)
    return contents


def _link_upstream(contents: RepoContents) -> list[str]:
    """Record in each view the storage fingerprints of the views it reads (upstream first), so
    changing a view is also a data change of the views built on it. Reports cycles."""
    from featurestore.plan import storage_fingerprint

    views = contents.feature_views
    done: dict[str, FeatureView] = {}

    def link(name: str, path: tuple[str, ...]) -> FeatureView:
        if name in done:
            return done[name]
        if name in path:
            first = views[path[0]]
            raise DefinitionError(
                f"views read each other in a cycle: {' -> '.join([*path, name])}",
                file=first.location.file, line=first.location.line, obj=f"feature view '{path[0]}'",
            )
        view = views[name]
        ups = {up: storage_fingerprint(link(up, (*path, name))) or "" for up in view.upstream_views}
        done[name] = dataclasses.replace(view, upstream_fingerprints=ups) if ups else view
        return done[name]

    try:
        for name in views:
            link(name, ())
    except DefinitionError as exc:
        return [str(exc)]
    contents.feature_views.update(done)
    return []


def _check_views(contents: RepoContents, repo_path: Path) -> list[str]:
    """Check every resolved view against the real columns of what it reads: a file source's
    columns, or a transformation's output (SQL checked by sqlglot, then run by DuckDB with no rows)."""
    import duckdb

    from featurestore.compile import Compiler

    problems: list[str] = []
    compiler = Compiler(repo_path, contents.feature_views.__getitem__)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for view in contents.feature_views.values():
            if not view.resolved:
                continue
            where = f"{view.location}: feature view {view.name!r}"
            try:
                if view.sql is not None:
                    _check_sql_columns(compiler, con, view)
                schema = compiler.output_schema(con, view)
            except (SourceError, DefinitionError) as exc:
                problems.append(f"{where}: {getattr(exc, 'reason', exc)}")
                continue
            except KeyError:
                continue  # reads an unknown view: reported already
            except duckdb.Error as exc:
                problems.append(f"{where}: the transformation does not run on its sources: {str(exc).strip()}")
                continue
            problems.extend(_check_columns(view, schema, where, repo_path))
    finally:
        con.close()
    return problems


def _check_sql_columns(compiler: Any, con: Any, view: FeatureView) -> None:
    """Resolve every column of the view's SQL against its inputs' real columns (sqlglot), so an
    unknown column is reported with the columns that exist."""
    import re

    from sqlglot.errors import OptimizeError, SqlglotError
    from sqlglot.optimizer.qualify import qualify

    from featurestore.compile import substitute_tables
    from featurestore.definitions.transformation import SqlTransformation

    inputs = {alias: compiler.input_table(con, view, alias, seen=(view.name,)) for alias in view.inputs}
    tables: dict[str, Any] = compiler.input_columns(con, view)
    tree = SqlTransformation(view.sql or "", view.location).tree
    substitute_tables(tree, inputs, view)  # unknown tables first: they would read as unknown columns
    try:
        qualify(tree, schema=tables, dialect="duckdb", validate_qualify_columns=True)
    except OptimizeError as exc:
        found = re.search(r"Column '([^']+)' could not be resolved|Unknown column: (\S+)", str(exc))
        if not found:
            return  # a construct sqlglot cannot follow: DuckDB's own check (next) decides
        listing = "; ".join(f"{alias}: {', '.join(f'{c} ({t})' for c, t in cols.items())}"
                            for alias, cols in tables.items())
        raise view.error(
            f"the SQL uses unknown column {found.group(1) or found.group(2)!r} ({_position(str(exc))}); the "
            f"sources have columns {listing}", field="sql",
        ) from None
    except SqlglotError:
        return


def _position(message: str) -> str:
    import re

    found = re.search(r"Line: (\d+), Col: (\d+)", message)
    return f"line {found.group(1)}, column {found.group(2)} of the query" if found else "in the query"


def _check_columns(view: FeatureView, schema: Any, where: str, repo_path: Path) -> list[str]:
    """Schema, join keys and timestamps must exist in the view's rows with compatible types."""
    import pyarrow.types as pat

    columns = {f.name: f.type for f in schema}
    listing = ", ".join(f"{n} ({t})" for n, t in columns.items())
    plain = view.file_source is not None
    what = "the source" if plain else "the transformation's output"
    prefix = "source " if plain else ""
    problems: list[str] = []

    for col, role in (
        (view.timestamp_column, "timestamp_field"),
        (view.created_column, "created_timestamp_column"),
    ):
        if col is None:
            continue
        if col not in columns:
            problems.append(f"{where}: {prefix}{role} {col!r} is not a column of {what}; columns: {listing}")
        elif not (pat.is_timestamp(columns[col]) or pat.is_date(columns[col])):
            problems.append(
                f"{where}: {prefix}{role} {col!r} has type {columns[col]}, expected a timestamp or date; "
                "convert it in the source data"
            )
    for key in view.join_keys:
        if key not in columns:
            problems.append(f"{where}: join key {key!r} is not a column of {what}; columns: {listing}")
    key_fields = {f.name: f for f in view.schema if f.name in view.join_keys and f.name in columns}
    for f in [*view.input_fields, *key_fields.values()]:
        if f.name not in columns:
            problems.append(
                f"{where}: schema field {f.name!r} is not a column of {what}; columns: {listing}"
            )
        elif not f.dtype.accepts(columns[f.name]):
            problems.append(
                f"{where}: schema field {f.name!r} is declared {f.dtype!r} but "
                f"{'the source column' if plain else what} has type "
                f"{columns[f.name]}; change the declared type or convert the column"
            )
    # Expectations read the rows as written: keys, value columns and the timestamp columns.
    from featurestore.offline.store import stored_columns

    written = [*view.join_keys, *stored_columns(view), view.timestamp_column,
               *([view.created_column] if view.created_column else [])]
    for exp in view.expectations:
        if exp.column is not None and exp.column not in written:
            problems.append(f"{where}: expectation {exp.describe()} is about column {exp.column!r}, which the view "
                            f"does not write; its columns: {written}")
    for alias, source in view.inputs.items():
        if isinstance(source, str) or not source.expectations:
            continue
        try:
            from featurestore.offline.sources import source_schema

            source_columns = source_schema(source, repo_path).names
        except SourceError:
            continue
        for exp in source.expectations:
            if exp.column is not None and exp.column not in source_columns:
                problems.append(f"{where}: source {source.path!r} ({alias}) expects {exp.describe()} of column "
                                f"{exp.column!r}, which it does not have; its columns: {source_columns}")
    return problems
