"""Typed columns of Python values <-> ``featurestore.v1.Column`` messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from featurestore.errors import RetrievalError
from featurestore.online.codec import micros_to_datetime
from featurestore.types import ArrayType, DType, parse_dtype
from featurestore.v1 import feature_store_pb2 as pb

# Feature type -> the Column field that carries it.
_FIELDS = {
    "Int64": "int64_values",
    "Int32": "int32_values",
    "Float64": "double_values",
    "Float32": "float_values",
    "String": "string_values",
    "Bool": "bool_values",
    "Bytes": "bytes_values",
    "UnixTimestamp": "timestamp_values",
}
_DEFAULTS: dict[str, Any] = {
    "int64_values": 0, "int32_values": 0, "double_values": 0.0, "float_values": 0.0, "string_values": "",
    "bool_values": False, "bytes_values": b"", "timestamp_values": 0,
}


def to_column(values: Sequence[Any], dtype: DType) -> pb.Column:
    """A Column of ``dtype`` holding ``values`` (None marks a null)."""
    column = pb.Column()
    fill_column(column, values, dtype)
    return column


def fill_column(column: pb.Column, values: Sequence[Any], dtype: DType) -> None:
    """Fill an empty Column in place (no copy of a built one into its parent message)."""
    nulls = [v is None for v in values]
    if isinstance(dtype, ArrayType):
        rows = column.array_values.rows
        for v in values:
            fill_column(rows.add(), [] if v is None else list(v), dtype.element)
    else:
        field = _FIELDS[dtype.name]
        default = _DEFAULTS[field]
        if dtype.name == "UnixTimestamp":
            items: list[Any] = [default if v is None else micros(v) for v in values]
        else:
            items = [default if v is None else v for v in values]
        getattr(column, field).values.extend(items)
    if any(nulls):
        column.nulls.extend(nulls)


def entity_column(name: str, values: Sequence[Any]) -> pb.Column:
    """An entity key column: integers as Int64, strings as String."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return to_column(values, parse_dtype("Int64"))
    if all(isinstance(v, str) for v in values):
        return to_column(values, parse_dtype("String"))
    kinds = sorted({type(v).__name__ for v in values})
    raise RetrievalError(f"join key {name!r} must hold only integers or only strings, got {kinds}")


def is_key_column(values: Sequence[Any]) -> bool:
    """Whether values can be a join key column (only integers or only strings)."""
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values) or all(
        isinstance(v, str) for v in values)


def request_column(name: str, values: Sequence[Any]) -> pb.Column:
    """A request value column, typed from its Python values (None is null)."""
    present = [v for v in values if v is not None]
    for dtype, kinds in (("Bool", (bool,)), ("Int64", (int,)), ("Float64", (int, float)), ("String", (str,)),
                         ("UnixTimestamp", (datetime,)), ("Bytes", (bytes,))):
        if all(isinstance(v, kinds) and (dtype == "Bool" or not isinstance(v, bool)) for v in present):
            return to_column(values, parse_dtype(dtype))
    kinds_found = sorted({type(v).__name__ for v in present})
    raise RetrievalError(f"request value {name!r} mixes types {kinds_found}; send one type per column")


def from_column(column: pb.Column) -> list[Any]:
    """The Python values of a Column (None at null rows)."""
    which = column.WhichOneof("kind")
    if which is None:
        return []
    if which == "array_values":
        values: list[Any] = [from_column(row) for row in column.array_values.rows]
    else:
        values = list(getattr(column, which).values)
        if which == "timestamp_values":
            values = [micros_to_datetime(v) for v in values]
    if column.nulls:
        if len(column.nulls) != len(values):
            raise RetrievalError(f"a column has {len(values)} values but {len(column.nulls)} null flags")
        values = [None if null else v for v, null in zip(values, column.nulls, strict=True)]
    return values


def micros(value: Any) -> int:
    """Microseconds since the Unix epoch of a datetime (naive: UTC) or of an int already in them."""
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return int(value)
