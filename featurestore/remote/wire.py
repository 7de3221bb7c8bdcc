"""``GetOnlineFeaturesResponse`` written straight in the protobuf wire format, for the server's fast path.

Building the message through protobuf's Python API costs about three message objects and a dozen
calls per feature (60 us for 1 entity x 19 features, a fifth of the server's CPU per call). The
response's shape is small and fixed, so the bytes are written here instead: the name and type of a
feature are encoded once and kept, a view's statuses and event times are encoded once and shared
by its features, and one value per feature (one entity) takes a shortcut per type; lists of more
than a few values still go through protobuf's C encoder (20 us for 1 x 19, 180 us for 100 x 19,
against 58 and 320 us for the message built through the API). The output parses to exactly the
message protobuf's own API builds from the same values (a test checks both on random responses),
so any protobuf client reads it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from featurestore.online.retrieval import ViewValues
from featurestore.remote.columns import micros
from featurestore.remote.messages import STATUS_TO_PB
from featurestore.types import ArrayType, DType
from featurestore.v1 import feature_store_pb2 as pb

# Column's field per feature type (field number << 3 | 2: a length-delimited submessage).
COLUMN_TAG = {"Int64": 0x0A, "Int32": 0x12, "Float64": 0x1A, "Float32": 0x22, "String": 0x2A, "Bool": 0x32,
               "Bytes": 0x3A, "UnixTimestamp": 0x42}
_ARRAY_TAG = 0x4A
_FEW = 4  # above this many entities, lists of values go through protobuf's C encoder
_VALUES: dict[str, Any] = {"Int64": pb.Int64Values, "Int32": pb.Int32Values, "String": pb.StringValues,
                           "Bytes": pb.BytesValues, "UnixTimestamp": pb.TimestampValues}
_NULLS_TAG = 0x7A  # Column.nulls, field 15, packed


ONE_BYTE = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return ONE_BYTE[n]
    if n < 0:
        n += 1 << 64  # int64: ten bytes of two's complement
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return ONE_BYTE[tag] + varint(len(payload)) + payload


def online_response(views: Sequence[ViewValues], entities: Sequence[tuple[str, bytes]]) -> bytes:
    """The serialized response: ``entities`` are (join key, serialized ``Column``) pairs."""
    out = entity_fields(entities)
    for view in views:
        if len(view.statuses) > _FEW:  # FeatureColumn's fields 3 and 4 alone are exactly the tail
            codes: list[Any] = [STATUS_TO_PB[s] for s in view.statuses]
            stamps_pb = [0 if t is None else t for t in view.event_us]
            tail = bytes(pb.FeatureColumn(statuses=codes, event_timestamps=stamps_pb).SerializeToString())
        else:
            statuses = bytes([STATUS_TO_PB[s] for s in view.statuses])
            stamps = b"".join([varint(0 if t is None else t) for t in view.event_us])
            tail = (_field(0x1A, statuses) if statuses else b"") + (_field(0x22, stamps) if stamps else b"")
        for (head, dtype_field, encode), values in zip(_encoders(view), view.columns, strict=True):
            col = encode(values)
            out.append(feature_field(head + varint(len(col)) + col, tail, dtype_field))
    return b"".join(out)


def entity_fields(entities: Sequence[tuple[str, bytes]]) -> list[bytes]:
    """The response's ``entities`` map entries: (join key, serialized ``Column``) pairs."""
    return [_field(0x0A, _field(0x0A, name.encode()) + _field(0x12, column)) for name, column in entities]


def feature_field(head: bytes, tail: bytes, dtype_field: bytes) -> bytes:
    """One ``features`` entry: name and values (``head``), statuses and event times (``tail``), dtype."""
    inner = head + tail + dtype_field
    return b"\x12" + varint(len(inner)) + inner


Encoder = tuple[bytes, bytes, Callable[[Sequence[Any]], bytes]]
# Per feature list of a view (the read plan hands the same list to every call): the name and dtype
# fields and a column encoder for each feature. Keyed by identity, the list kept alive with it.
_ENCODERS: dict[int, tuple[list[Any], tuple[str, ...], list[Encoder]]] = {}


def _encoders(view: ViewValues) -> list[Encoder]:
    found = _ENCODERS.get(id(view.dtypes))
    if found is not None and found[0] is view.dtypes and (found[1] is view.names or found[1] == view.names):
        return found[2]
    encoders = [(*name_fields(name, dtype), _encoder(dtype))
                for name, dtype in zip(view.names, view.dtypes, strict=True)]
    if len(_ENCODERS) >= 4096:
        _ENCODERS.clear()
    _ENCODERS[id(view.dtypes)] = (view.dtypes, tuple(view.names), encoders)
    return encoders


@lru_cache(maxsize=4096)
def name_fields(name: str, dtype: DType) -> tuple[bytes, bytes]:
    """The name field with the tag of the values field after it, and the dtype field."""
    return (_field(0x0A, name.encode()) if name else b"") + b"\x12", _field(0x2A, repr(dtype).encode())


def _encoder(dtype: DType) -> Callable[[Sequence[Any]], bytes]:
    """``column`` for one type, with a shortcut for the commonest case: one value, not null."""
    if isinstance(dtype, ArrayType) or dtype.name not in ("Float64", "Float32", "Int64", "Int32", "String"):
        return lambda values: column(values, dtype)
    tag = ONE_BYTE[COLUMN_TAG[dtype.name]]
    null = column([None], dtype)  # one null value: the same bytes every time
    if dtype.name in ("Float64", "Float32"):
        size = 8 if dtype.name == "Float64" else 4
        prefix = tag + ONE_BYTE[2 + size] + b"\x0a" + ONE_BYTE[size]
        one = _packer("d" if size == 8 else "f", 1)

        def encode_float(values: Sequence[Any]) -> bytes:
            if len(values) == 1:
                return null if values[0] is None else prefix + one(values[0])
            return column(values, dtype)

        return encode_float
    if dtype.name == "String":

        def encode_string(values: Sequence[Any]) -> bytes:
            if len(values) == 1:
                if values[0] is None:
                    return null
                text = values[0].encode()
                item = b"\x0a" + varint(len(text)) + text
                return tag + varint(len(item)) + item
            return column(values, dtype)

        return encode_string

    def encode_int(values: Sequence[Any]) -> bytes:
        if len(values) == 1:
            if values[0] is None:
                return null
            number = varint(values[0])
            return tag + ONE_BYTE[len(number) + 2] + b"\x0a" + ONE_BYTE[len(number)] + number
        return column(values, dtype)

    return encode_int


def column(values: Sequence[Any], dtype: DType) -> bytes:
    """A serialized ``Column`` of ``values`` (None marks a null)."""
    if isinstance(dtype, ArrayType):
        rows = b"".join([_field(0x0A, column([] if v is None else list(v), dtype.element)) for v in values])
        body = _field(_ARRAY_TAG, rows)
    else:
        body = _field(COLUMN_TAG[dtype.name], _scalars(values, dtype.name))
    if None in values:
        body += _field(_NULLS_TAG, bytes([v is None for v in values]))
    return body


@lru_cache(maxsize=256)
def _packer(code: str, n: int) -> Any:
    return struct.Struct(f"<{n}{code}").pack


def _scalars(values: Sequence[Any], kind: str) -> bytes:
    """The XValues message: field 1, packed for numbers, one entry per value for strings and bytes."""
    if not values:
        return b""
    if kind == "Float64" or kind == "Float32":
        pack = _packer("d" if kind == "Float64" else "f", len(values))
        data = pack(*values) if None not in values else pack(*[0.0 if v is None else v for v in values])
        return _field(0x0A, data)
    if kind == "Bool":
        return _field(0x0A, bytes([bool(v) for v in values]))
    if kind == "String":
        items: Sequence[Any] = [("" if v is None else v) for v in values] if None in values else values
    elif kind == "Bytes":
        items = [b"" if v is None else bytes(v) for v in values]
    elif kind == "UnixTimestamp":
        items = [0 if v is None else micros(v) for v in values]
    else:  # Int64, Int32
        items = values if None not in values else [0 if v is None else v for v in values]
    if len(items) > _FEW:  # protobuf's own encoder, in C, wins from here on
        return bytes(_VALUES[kind](values=items).SerializeToString())
    if kind == "String" or kind == "Bytes":
        return b"".join([_field(0x0A, v.encode() if kind == "String" else v) for v in items])
    return _field(0x0A, b"".join([varint(i) for i in items]))
