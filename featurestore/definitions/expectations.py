"""Data expectations declared on feature views and sources, in a small declarative form.

Each ``Expectation`` compiles to a Great Expectations 1.x expectation (``featurestore.validation``)
and runs on every batch before it is written. Row-level ones (not null, between, in set, unique,
regex, type) name the failing rows, so the ``quarantine`` policy can set them aside; table-level
ones (row count, freshness, null fraction, type) judge the batch as a whole.

Example::

    FeatureView(..., expectations=[
        Expect.not_null("user_id"), Expect.between("age", 0, 120), Expect.in_set("country", ["FR", "DE"]),
        Expect.fresh(timedelta(days=2)), Expect.null_fraction("credit_score", at_most=0.05),
    ], on_failure="quarantine")
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from featurestore.definitions.base import Location, caller_location, check_name
from featurestore.errors import DefinitionError
from featurestore.types import DType, parse_dtype

POLICIES = ("fail", "warn", "quarantine")
_ARG_ORDER = ("min", "max", "values", "pattern", "at_most", "max_age_seconds", "dtype", "mostly")
ROW_LEVEL = ("not_null", "between", "in_set", "unique", "regex")
TABLE_LEVEL = ("row_count_between", "fresh", "null_fraction", "type")


@dataclass(frozen=True)
class Expectation:
    """One expectation: a kind, the column it is about (None for table-level ones), arguments."""

    kind: str
    column: str | None = None
    args: tuple[tuple[str, Any], ...] = ()
    location: Location = field(default_factory=Location, compare=False, repr=False)

    def arg(self, name: str, default: Any = None) -> Any:
        return dict(self.args).get(name, default)

    @property
    def row_level(self) -> bool:
        return self.kind in ROW_LEVEL

    def describe(self) -> str:
        """``between(age, min=0, max=120)``: how the expectation reads in messages."""
        shown = [self.column] if self.column else []
        for name, value in sorted(self.args, key=lambda a: _ARG_ORDER.index(a[0]) if a[0] in _ARG_ORDER else 99):
            if name == "mostly" and value is None:
                continue
            if name == "max_age_seconds":
                shown.append(f"{timedelta(seconds=value)}")
            elif name == "dtype":
                shown.append(str(value))
            else:
                shown.append(f"{name}={value!r}")
        return f"{self.kind}({', '.join(str(s) for s in shown)})"

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "args": dict(self.args)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Expectation:
        return cls(spec["kind"], spec.get("column"), tuple(spec.get("args", {}).items()), Location("<registry>"))


def _build(kind: str, column: str | None, **args: Any) -> Expectation:
    loc = caller_location()
    obj = f"Expect.{kind}"
    if column is not None:
        check_name(column, kind="column", location=loc, field="column", obj=obj)
    mostly = args.get("mostly")
    if mostly is not None and not (isinstance(mostly, int | float) and 0 < mostly <= 1):
        raise DefinitionError(f"mostly must be a fraction in (0, 1], got {mostly!r}", file=loc.file,
                              line=loc.line, obj=obj, field="mostly")
    return Expectation(kind, column, tuple(args.items()), loc)


def _fail(kind: str, message: str, field: str | None = None) -> DefinitionError:
    """An error about an ``Expect.<kind>(...)`` call, pointing at the repo line that made it."""
    loc = caller_location()
    return DefinitionError(message, file=loc.file, line=loc.line, obj=f"Expect.{kind}", field=field)


def _number(value: Any, name: str, kind: str) -> None:
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
        loc = caller_location()
        raise DefinitionError(f"{name} must be a number or None, got {value!r}", file=loc.file, line=loc.line,
                              obj=f"Expect.{kind}", field=name)


class Expect:
    """Constructors of expectations. ``mostly`` (a fraction) lets that share of rows pass."""

    @staticmethod
    def not_null(column: str, *, mostly: float | None = None) -> Expectation:
        return _build("not_null", column, mostly=mostly)

    @staticmethod
    def between(column: str, min: float | None = None, max: float | None = None, *,
                mostly: float | None = None) -> Expectation:
        _number(min, "min", "between")
        _number(max, "max", "between")
        if min is None and max is None:
            raise _fail("between", "between needs min, max or both")
        if min is not None and max is not None and min > max:
            raise _fail("between", f"between: min {min} is above max {max}")
        return _build("between", column, min=min, max=max, mostly=mostly)

    @staticmethod
    def in_set(column: str, values: Sequence[Any], *, mostly: float | None = None) -> Expectation:
        if isinstance(values, str) or not isinstance(values, Sequence | set | frozenset) or not values:
            raise _fail("in_set", f"in_set needs a non-empty list of values, got {values!r}")
        return _build("in_set", column, values=sorted(values, key=repr), mostly=mostly)

    @staticmethod
    def unique(column: str) -> Expectation:
        return _build("unique", column)

    @staticmethod
    def regex(column: str, pattern: str, *, mostly: float | None = None) -> Expectation:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _fail("regex", f"regex {pattern!r} does not compile: {exc}") from None
        return _build("regex", column, pattern=pattern, mostly=mostly)

    @staticmethod
    def type(column: str, dtype: DType) -> Expectation:
        if not isinstance(dtype, DType):
            raise _fail("type", f"type needs a feature type such as Int64, got {dtype!r}")
        return _build("type", column, dtype=repr(dtype))

    @staticmethod
    def row_count_between(min: int | None = None, max: int | None = None) -> Expectation:
        _number(min, "min", "row_count_between")
        _number(max, "max", "row_count_between")
        if min is None and max is None:
            raise _fail("row_count_between", "row_count_between needs min, max or both")
        return _build("row_count_between", None, min=min, max=max)

    @staticmethod
    def fresh(max_age: timedelta) -> Expectation:
        """The newest event is at most ``max_age`` older than the end of the batch's window."""
        if not isinstance(max_age, timedelta) or max_age <= timedelta(0):
            raise _fail("fresh", f"fresh needs a positive timedelta, got {max_age!r}")
        return _build("fresh", None, max_age_seconds=max_age.total_seconds())

    @staticmethod
    def null_fraction(column: str, *, at_most: float) -> Expectation:
        if not isinstance(at_most, int | float) or not 0 <= at_most < 1:
            raise _fail("null_fraction", f"null_fraction needs at_most in [0, 1), got {at_most!r}")
        return _build("null_fraction", column, at_most=float(at_most))


def check_expectations(value: object, *, owner: str, location: Location) -> tuple[Expectation, ...]:
    """A definition's ``expectations=`` argument, as a tuple, or a clear error."""
    if isinstance(value, Expectation):
        value = [value]
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise DefinitionError(f"expectations must be a list of Expect.*(...), got {value!r}",
                              file=location.file, line=location.line, obj=owner, field="expectations")
    for item in value:
        if not isinstance(item, Expectation):
            raise DefinitionError(f"expectations must be Expect.*(...) objects, got {item!r}",
                                  file=location.file, line=location.line, obj=owner, field="expectations")
    return tuple(value)


def expected_dtype(expectation: Expectation) -> DType:
    return parse_dtype(expectation.arg("dtype"))
