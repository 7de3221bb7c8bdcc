"""One entity's feature columns written straight from the stored values, for the server's commonest call.

A model server asks for one entity's vector. The general path decodes each stored value into
Python objects (``OnlineRead.decode_views``) and writes them out again (``wire.online_response``):
about 55 us for 1 x 19. Here the bytes go across directly: a float is the same 8 (or 4) little-
endian bytes in the stored value and on the wire, a string the same UTF-8 bytes, so most features
are a slice between two constant pieces; integers, booleans and timestamps take one unpack. What
depends only on the view and the requested features (names, types, offsets, null bits, the whole
answer for an entity that is not found) is worked out once per request shape: about 20 us for
1 x 19. The bytes are exactly those of the general path (a property test checks both on random
values and schemas).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from featurestore.online.codec import HEADER, decode_var
from featurestore.online.retrieval import FieldStatus, ViewPlan
from featurestore.remote import wire
from featurestore.remote.messages import STATUS_TO_PB

_PRESENT = wire.ONE_BYTE[STATUS_TO_PB[FieldStatus.PRESENT]]
_OUTSIDE_MAX_AGE = wire.ONE_BYTE[STATUS_TO_PB[FieldStatus.OUTSIDE_MAX_AGE]]
# Writes one feature's name and values fields from a stored value: (value, variable-width spans) -> bytes.
Reader = Callable[[bytes, Sequence[tuple[int, int]]], bytes]
_NO_SPANS: tuple[tuple[int, int], ...] = ()
# A features entry's tag and length, for the lengths that fit one byte (nearly all of them).
_FEATURE_TAG = [b"\x12" + wire.ONE_BYTE[n] for n in range(128)]


@lru_cache(maxsize=4096)  # event times repeat (a batch writes many rows at one time)
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
        self.max_age_us = plan.max_age_us
        var_index = {c.name: i for i, c in enumerate(codec.var_cols)}
        # Per requested feature: its null bit, its name and values fields when null, its reader
        # (which writes them from the stored value) and its dtype field.
        self.features: list[tuple[int, int, bytes, Reader, bytes]] = []
        self.needs_spans = False
        for position, name, dtype in zip(plan.positions, plan.output_names, plan.dtypes, strict=True):
            col = codec.columns[position]
            head, dtype_field = wire.name_fields(name, dtype)
            null = wire.column([None], dtype)
            offset = codec.fixed_offset_of(col.name) if col.fixed else None
            reader = _reader(head, col.name, dtype, offset, var_index.get(col.name))
            self.needs_spans |= col.name in var_index
            self.features.append((HEADER.size + (position >> 3), 1 << (position & 7),
                                  head + wire.varint(len(null)) + null, reader, dtype_field))
        # Not found: nothing in it depends on the call.
        not_found = _tail(wire.ONE_BYTE[STATUS_TO_PB[FieldStatus.NOT_FOUND]], 0)
        self.not_found = b"".join([wire.feature_field(null, not_found, post) for _, _, null, _, post in self.features])

    def write(self, value: bytes | None, now_us: int, out: list[bytes]) -> None:
        header = None if value is None else self.codec.header(value)
        if header is None:  # missing, or written under another schema: not found, as decode() says
            out.append(self.not_found)
            return
        assert value is not None
        event_us = header[0]
        if self.max_age_us is not None and event_us < now_us - self.max_age_us:
            tail = _tail(_OUTSIDE_MAX_AGE, event_us)
            out.extend([wire.feature_field(null, tail, post) for _, _, null, _, post in self.features])
            return
        tail = _tail(_PRESENT, event_us)
        spans = self.codec.var_spans(value) if self.needs_spans else _NO_SPANS
        for null_byte, mask, null, read, post in self.features:
            inner = (null if value[null_byte] & mask else read(value, spans)) + tail + post
            n = len(inner)
            out.append(_FEATURE_TAG[n] + inner if n < 128 else wire.feature_field(inner, b"", b""))


def _reader(head: bytes, name: str, dtype: Any, offset: int | None, var: int | None) -> Reader:
    """How to write one feature's name and values fields (``head``, then a Column of one value, not
    null) from the stored bytes."""
    kind = dtype.name
    one = wire.ONE_BYTE
    if offset is not None and kind in ("Float64", "Float32"):
        size = 8 if kind == "Float64" else 4
        # Column{XValues{values: packed}}: tag, length, then the packed field's tag and length.
        pre = head + one[4 + size] + one[wire.COLUMN_TAG[kind]] + one[2 + size] + b"\x0a" + one[size]
        end = offset + size
        return lambda value, spans: pre + value[offset:end]
    if offset is not None and kind in ("Int64", "Int32", "UnixTimestamp"):
        unpack = struct.Struct("<q" if kind != "Int32" else "<i").unpack_from
        tag = one[wire.COLUMN_TAG[kind]]
        by_size = [head + one[4 + k] + tag + one[k + 2] + b"\x0a" + one[k] for k in range(11)]  # varints: 1-10 bytes

        def read_int(value: bytes, spans: Sequence[tuple[int, int]]) -> bytes:
            number = wire.varint(unpack(value, offset)[0])
            return by_size[len(number)] + number

        return read_int
    if offset is not None and kind == "Bool":
        false, true = (head + wire.varint(len(c)) + c for c in (wire.column([v], dtype) for v in (False, True)))
        return lambda value, spans: true if value[offset] else false
    if var is not None and kind in ("String", "Bytes"):
        tag = one[wire.COLUMN_TAG[kind]]

        def read_text(value: bytes, spans: Sequence[tuple[int, int]]) -> bytes:
            start, end = spans[var]
            item = b"\x0a" + wire.varint(end - start) + value[start:end]
            col = tag + wire.varint(len(item)) + item
            return head + wire.varint(len(col)) + col

        return read_text
    if var is not None:  # arrays: decoded, then written as the general path does

        def read_array(value: bytes, spans: Sequence[tuple[int, int]]) -> bytes:
            col = wire.column([decode_var(value[spans[var][0] : spans[var][1]], dtype)], dtype)
            return head + wire.varint(len(col)) + col

        return read_array
    raise AssertionError(f"feature {name!r} of type {dtype!r} is neither fixed- nor variable-width")
