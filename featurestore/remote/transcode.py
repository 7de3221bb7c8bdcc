"""One entity's feature columns written straight from the stored values, for the server's commonest call.

A model server asks for one entity's vector. The general path decodes each stored value into
Python objects (``OnlineRead.decode_views``) and writes them out again (``wire.online_response``):
about 55 us for 1 x 19. Here the bytes go across directly: a float is the same 8 (or 4) little-
endian bytes in the stored value and on the wire, a string the same UTF-8 bytes, so most features
are a slice between two constant pieces; integers, booleans and timestamps take one unpack. What
depends only on the view and the requested features (names, types, offsets, null bits, the whole
answer for an entity that is not found) is worked out once per request shape. The bytes are
exactly those of the general path (a property test checks both on random values and schemas).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from featurestore.online.codec import HEADER, ValueCodec, decode_var
from featurestore.online.retrieval import FieldStatus, ViewPlan
from featurestore.remote import wire
from featurestore.remote.messages import STATUS_TO_PB

_LEN = struct.Struct("<I")
_PRESENT = wire.ONE_BYTE[STATUS_TO_PB[FieldStatus.PRESENT]]
_OUTSIDE_MAX_AGE = wire.ONE_BYTE[STATUS_TO_PB[FieldStatus.OUTSIDE_MAX_AGE]]
# Reads one feature's Column bytes from a stored value: (value, variable-width spans) -> bytes.
Reader = Callable[[bytes, list[tuple[int, int]]], bytes]


def _tail(status: bytes, event_us: int) -> bytes:
    """FeatureColumn's statuses and event_timestamps fields for one entity (shared by a view's features)."""
    stamp = wire.varint(event_us)
    return b"\x1a\x01" + status + b"\x22" + wire.ONE_BYTE[len(stamp)] + stamp


class OneEntityWriter:
    """Writes the ``features`` fields of a response for one entity from its stored values, view by view."""

    def __init__(self, plans: Sequence[ViewPlan]) -> None:
        self.views = [_ViewWriter(plan) for plan in plans]

    def write(self, raw: Sequence[Sequence[bytes | None]], now_us: int) -> list[bytes]:
        """The serialized feature fields of every view; ``raw`` holds one stored value (or None) per view."""
        out: list[bytes] = []
        for view, found in zip(self.views, raw, strict=True):
            view.write(found[0], now_us, out)
        return out


class _ViewWriter:
    def __init__(self, plan: ViewPlan) -> None:
        codec = plan.codec
        self.codec = codec
        self.layout = codec.layout_id
        self.min_size = codec.fixed_offset
        self.max_age_us = plan.max_age_us
        self.var_count = len(codec.var_cols)
        self.var_start = codec.fixed_offset + codec.fixed_struct.size
        offsets: dict[str, int] = {}
        pos = codec.fixed_offset
        for col in codec.fixed_cols:
            assert col.fixed is not None
            offsets[col.name] = pos
            pos += struct.calcsize("<" + col.fixed[0])
        var_index = {c.name: i for i, c in enumerate(codec.var_cols)}
        # Per requested feature: its null bit, the constant pieces around its values, and its reader.
        self.features: list[tuple[int, int, bytes, bytes, bytes, Reader]] = []
        self.null_parts: list[tuple[bytes, bytes]] = []
        self.needs_spans = False
        for position, name, dtype in zip(plan.positions, plan.output_names, plan.dtypes, strict=True):
            col = codec.columns[position]
            head, dtype_field = wire.name_fields(name, dtype)
            null = wire.column([None], dtype)
            self.null_parts.append((head + wire.varint(len(null)) + null, dtype_field))
            reader = _reader(codec, col.name, dtype, offsets.get(col.name), var_index.get(col.name))
            self.needs_spans |= col.name in var_index
            self.features.append((HEADER.size + (position >> 3), 1 << (position & 7), head, dtype_field, null, reader))
        # Not found: nothing in it depends on the call.
        not_found = [wire.feature_field(pre, _tail(wire.ONE_BYTE[STATUS_TO_PB[FieldStatus.NOT_FOUND]], 0), post)
                     for pre, post in self.null_parts]
        self.not_found = b"".join(not_found)

    def write(self, value: bytes | None, now_us: int, out: list[bytes]) -> None:
        if value is None or len(value) < self.min_size:
            out.append(self.not_found)
            return
        event_us, _, layout = HEADER.unpack_from(value)
        if layout != self.layout:  # written under another schema: not found, as decode() says
            out.append(self.not_found)
            return
        if self.max_age_us is not None and event_us < now_us - self.max_age_us:
            tail = _tail(_OUTSIDE_MAX_AGE, event_us)
            out.extend([wire.feature_field(pre, tail, post) for pre, post in self.null_parts])
            return
        tail = _tail(_PRESENT, event_us)
        spans = self._spans(value) if self.needs_spans else []
        varint = wire.varint
        for null_byte, mask, head, dtype_field, null, read in self.features:
            col = null if value[null_byte] & mask else read(value, spans)
            inner = head + varint(len(col)) + col + tail + dtype_field
            out.append(b"\x12" + varint(len(inner)) + inner)

    def _spans(self, value: bytes) -> list[tuple[int, int]]:
        """(start, end) of each variable-width feature's bytes in ``value``."""
        spans = []
        pos = self.var_start
        for _ in range(self.var_count):
            (length,) = _LEN.unpack_from(value, pos)
            pos += 4
            spans.append((pos, pos + length))
            pos += length
        return spans


def _reader(codec: ValueCodec, name: str, dtype: Any, offset: int | None, var: int | None) -> Reader:
    """How to write one feature's Column (one value, not null) from the stored bytes."""
    kind = dtype.name
    if offset is not None and kind in ("Float64", "Float32"):
        size = 8 if kind == "Float64" else 4
        prefix = wire.ONE_BYTE[wire.COLUMN_TAG[kind]] + wire.ONE_BYTE[2 + size] + b"\x0a" + wire.ONE_BYTE[size]
        end = offset + size
        return lambda value, spans: prefix + value[offset:end]
    if offset is not None and kind in ("Int64", "Int32", "UnixTimestamp"):
        unpack = struct.Struct("<q" if kind != "Int32" else "<i").unpack_from
        tag = wire.ONE_BYTE[wire.COLUMN_TAG[kind]]

        def read_int(value: bytes, spans: list[tuple[int, int]]) -> bytes:
            number = wire.varint(unpack(value, offset)[0])
            return tag + wire.ONE_BYTE[len(number) + 2] + b"\x0a" + wire.ONE_BYTE[len(number)] + number

        return read_int
    if offset is not None and kind == "Bool":
        false, true = wire.column([False], dtype), wire.column([True], dtype)
        return lambda value, spans: true if value[offset] else false
    if var is not None and kind in ("String", "Bytes"):
        tag = wire.ONE_BYTE[wire.COLUMN_TAG[kind]]

        def read_text(value: bytes, spans: list[tuple[int, int]]) -> bytes:
            start, end = spans[var]
            item = b"\x0a" + wire.varint(end - start) + value[start:end]
            return tag + wire.varint(len(item)) + item

        return read_text
    if var is not None:  # arrays: decoded, then written as the general path does
        return lambda value, spans: wire.column([decode_var(value[spans[var][0] : spans[var][1]], dtype)], dtype)
    raise AssertionError(f"feature {name!r} of type {dtype!r} is neither fixed- nor variable-width")

