"""Feature value types, named as in Feast (``Int64``, ``Float32``, ``Array(String)``...).

A type knows its Arrow form, and which Arrow types a source column may have to feed it: widening
numbers is fine (an Int32 column feeds an Int64 feature), anything else is a definition error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True, slots=True)
class DType:
    """Base of all feature types; compare by value, print as written in a repo."""

    name: str

    def __repr__(self) -> str:
        return self.name

    def to_arrow(self) -> pa.DataType:
        raise NotImplementedError

    def accepts(self, arrow_type: pa.DataType) -> bool:
        """Whether a source column of ``arrow_type`` can feed this feature without loss."""
        raise NotImplementedError


_INT_TYPES = ("Int32", "Int64")
_FLOAT_TYPES = ("Float32", "Float64")


@dataclass(frozen=True, slots=True, repr=False)
class PrimitiveType(DType):
    def to_arrow(self) -> pa.DataType:
        import pyarrow as pa

        return {
            "Int32": pa.int32(),
            "Int64": pa.int64(),
            "Float32": pa.float32(),
            "Float64": pa.float64(),
            "String": pa.string(),
            "Bool": pa.bool_(),
            "UnixTimestamp": pa.timestamp("us", tz="UTC"),
            "Bytes": pa.binary(),
        }[self.name]

    def accepts(self, arrow_type: pa.DataType) -> bool:
        import pyarrow as pa
        import pyarrow.types as t

        if t.is_null(arrow_type):
            return True
        # Numbers may be narrowed to the declared width (as Feast does); an integer that does not
        # fit fails loudly when cast at retrieval instead of wrapping around.
        if self.name in _INT_TYPES:
            return bool(t.is_integer(arrow_type))
        if self.name in _FLOAT_TYPES:
            return bool(t.is_floating(arrow_type) or t.is_integer(arrow_type) or t.is_decimal(arrow_type))
        if self.name == "String":
            return is_text(arrow_type) or t.is_dictionary(arrow_type)
        if self.name == "Bool":
            return t.is_boolean(arrow_type)
        if self.name == "UnixTimestamp":
            return t.is_timestamp(arrow_type) or t.is_date(arrow_type) or t.is_integer(arrow_type)
        if self.name == "Bytes":
            return t.is_binary(arrow_type) or t.is_large_binary(arrow_type) or arrow_type == pa.binary()
        return False


@dataclass(frozen=True, slots=True, repr=False)
class ArrayType(DType):
    element: DType

    def to_arrow(self) -> pa.DataType:
        import pyarrow as pa

        return pa.list_(self.element.to_arrow())

    def accepts(self, arrow_type: pa.DataType) -> bool:
        import pyarrow.types as t

        if t.is_list(arrow_type) or t.is_large_list(arrow_type) or t.is_fixed_size_list(arrow_type):
            return self.element.accepts(arrow_type.value_type)
        return t.is_null(arrow_type)


Int32 = PrimitiveType("Int32")
Int64 = PrimitiveType("Int64")
Float32 = PrimitiveType("Float32")
Float64 = PrimitiveType("Float64")
String = PrimitiveType("String")
Bool = PrimitiveType("Bool")
UnixTimestamp = PrimitiveType("UnixTimestamp")
Bytes = PrimitiveType("Bytes")

PRIMITIVES: dict[str, PrimitiveType] = {
    t.name: t for t in (Int32, Int64, Float32, Float64, String, Bool, UnixTimestamp, Bytes)
}


def Array(element: DType) -> ArrayType:
    """A list of ``element`` values, for example ``Array(Float32)`` for an embedding."""
    if not isinstance(element, DType):
        raise TypeError(f"Array() takes a feature type such as Int64, got {element!r}")
    if isinstance(element, ArrayType):
        raise TypeError("nested arrays are not supported: use Array(<primitive type>)")
    return ArrayType(f"Array({element.name})", element)


def parse_dtype(text: str) -> DType:
    """Inverse of ``repr``: ``"Array(Int64)"`` -> ``Array(Int64)``. Used by the registry."""
    if text in PRIMITIVES:
        return PRIMITIVES[text]
    if text.startswith("Array(") and text.endswith(")"):
        return Array(parse_dtype(text[len("Array(") : -1]))
    raise ValueError(f"unknown feature type {text!r}; use one of {', '.join(PRIMITIVES)} or Array(...)")


def is_text(arrow_type: pa.DataType) -> bool:
    """String-like Arrow types (plain, large or view)."""
    import pyarrow.types as t

    return bool(
        t.is_string(arrow_type) or t.is_large_string(arrow_type)
        or getattr(t, "is_string_view", lambda _: False)(arrow_type)
    )


def arrow_type_name(arrow_type: pa.DataType) -> str:
    """A short, readable name of an Arrow type for error messages."""
    return str(arrow_type)
