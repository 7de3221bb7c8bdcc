"""What turns raw rows into features: SQL, a Polars function, windowed aggregations.

Each is plain data that checks itself when built and has a normalized form for fingerprints:

* ``SqlTransformation``: a DuckDB ``SELECT``, parsed by sqlglot; the fingerprint hashes the tree
  printed without comments or formatting, so reformatting the query is not a data change.
* ``UserFunction``: a self-contained Python function (Polars transformations and on-demand
  features). The registry keeps its source, re-formatted from the syntax tree (comments and
  decorators dropped), so the feature server can rebuild it without the repo's files.
* ``Aggregation``: a function over a column in a trailing time window ``(t - window, t]``.
"""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from featurestore.definitions.base import Location, caller_location, check_name
from featurestore.errors import DefinitionError
from featurestore.types import Float64, Int64, PrimitiveType

if TYPE_CHECKING:
    from sqlglot import exp

    from featurestore.types import DType


# -- SQL ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlTransformation:
    """A ``SELECT`` in the DuckDB dialect over a view's named sources."""

    sql: str
    location: Location = field(default_factory=Location, compare=False, repr=False)

    @property
    def tree(self) -> exp.Query:
        """The parsed query (a fresh copy: callers may rewrite it)."""
        cached = self.__dict__.get("_tree")
        if cached is None:
            cached = parse_query(self.sql, self.location)
            object.__setattr__(self, "_tree", cached)
        return cached.copy()

    @property
    def normalized(self) -> str:
        """The query as sqlglot prints it, without comments: equal for equal queries however
        they are formatted."""
        return self.tree.sql("duckdb", comments=False)


def parse_query(sql: str, location: Location, obj: str = "sql") -> exp.Query:
    """Parse one DuckDB ``SELECT`` (or set operation of them), or explain why not.

    Syntax errors give the line and column inside the query; anything but a query (DDL, DML,
    several statements) is refused.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    where: dict[str, Any] = {"file": location.file, "line": location.line, "field": obj}
    try:
        statements = [s for s in sqlglot.parse(sql, dialect="duckdb") if s is not None]
    except ParseError as err:
        first = err.errors[0] if err.errors else {}
        line, col = first.get("line"), first.get("col")
        detail = first.get("description") or str(err)
        near = (first.get("highlight") or "").strip()
        raise DefinitionError(
            f"SQL syntax error at line {line}, column {col} of the query"
            + (f" near {near!r}" if near else "") + f": {detail}",
            **where,
        ) from None
    except TokenError as err:
        raise DefinitionError(f"SQL syntax error: {err}", **where) from None
    if len(statements) != 1:
        raise DefinitionError(f"expected exactly one SELECT statement, found {len(statements)}", **where)
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise DefinitionError(
            f"only queries (SELECT) are allowed in a transformation, got {tree.key.upper()}: "
            "a transformation must not create, change or delete data",
            **where,
        )
    for node in tree.walk():
        if isinstance(node, exp.DDL | exp.DML | exp.Command | exp.Copy | exp.Set | exp.Use | exp.Pragma):
            raise DefinitionError(
                f"only queries are allowed in a transformation, found {type(node).__name__.upper()}", **where
            )
    return tree


# -- Python functions -----------------------------------------------------------------------------

# Names a self-contained function may use without importing them.
FUNCTION_GLOBALS = ("pl", "polars", "math", "datetime", "timedelta", "timezone")


def _function_namespace() -> dict[str, Any]:
    import datetime as dt
    import math

    import polars

    return {
        "pl": polars, "polars": polars, "math": math, "datetime": dt.datetime, "timedelta": dt.timedelta,
        "timezone": dt.timezone, "__builtins__": builtins,
    }


@dataclass(frozen=True)
class UserFunction:
    """A Python function stored by its source, so it can be rebuilt from the registry.

    It must be self-contained: it may use builtins, ``pl``/``polars``, ``math``, ``datetime``,
    ``timedelta`` and ``timezone``, and import anything else inside its body.
    """

    name: str
    source: str  # normalized: a single def, no decorators or comments
    function: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_callable(cls, fn: object, *, location: Location, obj: str, field_name: str) -> UserFunction:
        where: dict[str, Any] = {"file": location.file, "line": location.line, "obj": obj, "field": field_name}
        if not inspect.isfunction(fn):
            raise DefinitionError(f"must be a Python function (def ...), got {type(fn).__name__}", **where)
        if fn.__name__ == "<lambda>":
            raise DefinitionError("must be a named function (def ...), not a lambda", **where)
        if fn.__closure__:
            names = list(fn.__code__.co_freevars)
            raise DefinitionError(
                f"function {fn.__name__!r} uses variable(s) {names} of an enclosing function; define it at "
                "module level and pass values as constants",
                **where,
            )
        unknown = sorted(_global_names(fn.__code__) - set(FUNCTION_GLOBALS) - set(dir(builtins)))
        if unknown:
            raise DefinitionError(
                f"function {fn.__name__!r} must be self-contained, but uses {unknown} from outside it; "
                f"import or define them inside the function (available without import: "
                f"{', '.join(FUNCTION_GLOBALS)})",
                **where,
            )
        try:
            text = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError) as exc:
            raise DefinitionError(f"cannot read the source of {fn.__name__!r}: {exc}", **where) from None
        # Always run the function rebuilt from its source, as the feature server will: a function
        # that works in the repo works everywhere.
        return cls(fn.__name__, normalize_function(text, fn.__name__))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self.function
        if fn is None:
            namespace = _function_namespace()
            exec(compile(self.source, f"<function {self.name}>", "exec"), namespace)
            fn = namespace[self.name]
            object.__setattr__(self, "function", fn)
        return fn(*args, **kwargs)


def normalize_function(text: str, name: str) -> str:
    """The function's definition re-printed from its syntax tree: no decorators, comments or
    formatting, so only a change of code changes it."""
    module = ast.parse(text)
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            node.decorator_list = []
            return ast.unparse(node)
    raise ValueError(f"no function {name!r} in its source")


def _global_names(code: Any) -> set[str]:
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _global_names(const)
    return names


# -- aggregations ---------------------------------------------------------------------------------

AGGREGATION_FUNCTIONS = ("count", "sum", "mean", "min", "max", "stddev", "last", "approx_count_distinct")


@dataclass(frozen=True)
class Aggregation:
    """A windowed aggregation: ``function`` over ``column`` for the events in ``(t - window, t]``.

    Functions: count (non-null values), sum, mean, min, max, stddev (sample), last (the newest
    event's value) and approx_count_distinct (HyperLogLog). The feature is named
    ``<column>_<function>_<window>`` (``amount_sum_7d``) unless ``name`` is given. An empty
    window gives 0 for counts and null otherwise.

    Example::

        Aggregation(column="amount", function="sum", window=timedelta(days=7))
    """

    column: str
    function: str
    window: timedelta
    _: KW_ONLY
    name: str = ""
    location: Location = field(default_factory=Location, compare=False, repr=False)

    def __post_init__(self) -> None:
        loc = self.location if self.location.file else caller_location()
        object.__setattr__(self, "location", loc)
        obj = f"Aggregation({self.column!r}, {self.function!r})"
        where: dict[str, Any] = {"file": loc.file, "line": loc.line, "obj": obj}
        check_name(self.column, kind="column", location=loc, field="column", obj=obj)
        if self.function not in AGGREGATION_FUNCTIONS:
            raise DefinitionError(
                f"unknown aggregation function {self.function!r}; use one of {', '.join(AGGREGATION_FUNCTIONS)}",
                field="function", **where,
            )
        if not isinstance(self.window, timedelta) or self.window <= timedelta(0):
            raise DefinitionError(
                f"window must be a positive datetime.timedelta, got {self.window!r}", field="window", **where
            )
        if self.window % timedelta(seconds=1):
            raise DefinitionError(f"window must be whole seconds, got {self.window}", field="window", **where)
        if not self.name:
            object.__setattr__(self, "name", f"{self.column}_{self.function}_{window_label(self.window)}")
        check_name(self.name, kind="feature", location=loc, obj=obj)

    def output_dtype(self, input_dtype: DType) -> DType:
        """The feature's type, given the aggregated column's type."""
        if self.function in ("count", "approx_count_distinct"):
            return Int64
        if self.function in ("mean", "stddev"):
            return Float64
        if self.function == "sum":
            return Int64 if input_dtype in (Int64, PrimitiveType("Int32")) else Float64
        return input_dtype

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "column": self.column, "function": self.function,
                "window_seconds": int(self.window.total_seconds())}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], location: Location | None = None) -> Aggregation:
        return cls(spec["column"], spec["function"], timedelta(seconds=spec["window_seconds"]),
                   name=spec["name"], location=location or Location("<registry>"))


def window_label(window: timedelta) -> str:
    """``7d``, ``12h``, ``30m`` or ``45s``: the largest unit that divides the window."""
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
