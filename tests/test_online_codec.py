"""Online keys and values (featurestore/online/codec.py): round trips, layout checks, key encoding."""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from redis.crc import key_slot

from featurestore import Entity, FeatureView, Field, FileSource
from featurestore.errors import OnlineStoreError
from featurestore.offline.retrieval import ViewRequest
from featurestore.online.codec import HEADER, NO_CREATED, KeyCodec, ValueCodec
from featurestore.online.retrieval import OnlineRead
from featurestore.types import (
    Array,
    Bool,
    Bytes,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)
from tests.stored_values import NOW_US, cases

USER = Entity("user", join_keys=["user_id"])
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
T0_US = 1767323045678901  # T0 in epoch microseconds
T_NEG = datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)  # -1 us: a negative timestamp


def view(schema: list[Field], name: str = "v") -> FeatureView:
    return FeatureView(name, entities=[USER], source=FileSource("x.parquet"), schema=schema)


# Every feature type, 12 features (so the null bitmap spans two bytes).
ALL_TYPES = [
    Field("i32", Int32), Field("i64", Int64), Field("f32", Float32), Field("f64", Float64),
    Field("s", String), Field("b", Bool), Field("t", UnixTimestamp), Field("by", Bytes),
    Field("ai", Array(Int64)), Field("af", Array(Float32)), Field("astr", Array(String)), Field("ab", Array(Bool)),
]
# One row per entry; each column holds a null somewhere and every array column a null element.
ROWS: list[dict[str, Any]] = [
    {"i32": 1, "i64": None, "f32": 1.5, "f64": 0.1, "s": "héllo ✓ 日本", "b": True, "t": T0, "by": b"",
     "ai": [1, None, 3], "af": [1.5], "astr": ["", None, "é"], "ab": [True, False, None]},
    {"i32": None, "i64": 2**62, "f32": 2.25, "f64": None, "s": "", "b": False, "t": None, "by": b"\x00a\x00",
     "ai": [], "af": None, "astr": None, "ab": []},
    {"i32": -(2**31), "i64": -1, "f32": None, "f64": 1e300, "s": None, "b": None, "t": T_NEG, "by": None,
     "ai": None, "af": [None, 2.5], "astr": [], "ab": None},
    {"i32": 2**31 - 1, "i64": 0, "f32": -0.0, "f64": -2.5, "s": "a|b{c}%", "b": True, "t": EPOCH, "by": b"\x00",
     "ai": [None], "af": [], "astr": ["x|y", "\x00"], "ab": [False]},
]
ARROW_TYPES = {
    "i32": pa.int32(), "i64": pa.int64(), "f32": pa.float32(), "f64": pa.float64(), "s": pa.string(),
    "b": pa.bool_(), "t": pa.timestamp("us", "UTC"), "by": pa.binary(), "ai": pa.list_(pa.int64()),
    "af": pa.list_(pa.float32()), "astr": pa.list_(pa.string()), "ab": pa.list_(pa.bool_()),
}
COLUMNS = [f.name for f in ALL_TYPES]


def table(rows: list[dict[str, Any]] = ROWS) -> pa.Table:
    return pa.table({name: pa.array([r[name] for r in rows], ARROW_TYPES[name]) for name in COLUMNS})


def expected(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r[name] for name in COLUMNS] for r in rows]


def timestamps(values: list[datetime | None]) -> pa.Array:
    return pa.array(values, pa.timestamp("us", "UTC"))


def decode_all(codec: ValueCodec, values: pa.Array) -> list[tuple[int, int, list[Any]] | None]:
    assert values.type == pa.binary()
    return [codec.decode(v) for v in values.to_pylist()]


# -- ValueCodec round trips --------------------------------------------------------------------


def test_round_trip_every_type_without_created() -> None:
    codec = ValueCodec(view(ALL_TYPES))
    events = [T0, T0 + timedelta(microseconds=1), T_NEG, EPOCH]
    decoded = decode_all(codec, codec.encode(table(), timestamps(events), None))
    assert [d[0] for d in decoded if d] == [T0_US, T0_US + 1, -1, 0]
    assert [d[1] for d in decoded if d] == [NO_CREATED] * 4
    assert [d[2] for d in decoded if d] == expected(ROWS)


def test_round_trip_every_type_with_created() -> None:
    codec = ValueCodec(view(ALL_TYPES))
    created = timestamps([T0 + timedelta(seconds=1), None, EPOCH, T_NEG])
    decoded = decode_all(codec, codec.encode(table(), timestamps([T0] * 4), created))
    assert [(d[0], d[1]) for d in decoded if d] == [
        (T0_US, T0_US + 1_000_000), (T0_US, NO_CREATED), (T0_US, 0), (T0_US, -1),
    ]
    assert [d[2] for d in decoded if d] == expected(ROWS)


def test_decoded_python_types() -> None:
    codec = ValueCodec(view(ALL_TYPES))
    decoded = codec.decode(codec.encode(table(), timestamps([T0] * 4), None)[0].as_py())
    assert decoded is not None
    values = dict(zip(COLUMNS, decoded[2], strict=True))
    assert [type(values[n]) for n in ("i32", "f32", "s", "b", "t", "by", "ai")] == [
        int, float, str, bool, datetime, bytes, list,
    ]
    assert values["t"].tzinfo == UTC and values["t"] == T0
    assert values["f64"] == 0.1  # Float64 is exact
    assert values["f32"] == 1.5


@pytest.mark.parametrize("offset", [1, 2, 3])
def test_round_trip_sliced_table(offset: int) -> None:
    codec = ValueCodec(view(ALL_TYPES))
    full = table()
    events = timestamps([T0 + timedelta(seconds=i) for i in range(4)])
    created = timestamps([EPOCH, T0, None, T_NEG])
    sliced = full.slice(offset)
    assert sliced.column("ai").chunk(0).offset == offset  # the columns really are offset views
    decoded = decode_all(codec, codec.encode(sliced, events.slice(offset), created.slice(offset)))
    assert [d[2] for d in decoded if d] == expected(ROWS[offset:])
    assert [d[0] for d in decoded if d] == [T0_US + i * 1_000_000 for i in range(offset, 4)]
    assert [d[1] for d in decoded if d] == [0, T0_US, NO_CREATED, -1][offset:]


def test_round_trip_sliced_record_batch_middle() -> None:
    codec = ValueCodec(view(ALL_TYPES))
    batch = table().to_batches()[0].slice(1, 2)
    assert batch.column(8).offset == 1
    decoded = decode_all(codec, codec.encode(batch, timestamps([T0, T0, T0, T0]).slice(1, 2), None))
    assert [d[2] for d in decoded if d] == expected(ROWS[1:3])
    assert [d[1] for d in decoded if d] == [NO_CREATED, NO_CREATED]


def test_round_trip_chunked_table() -> None:
    """A table whose columns have several chunks (as pa.concat_tables gives) encodes row by row."""
    codec = ValueCodec(view(ALL_TYPES))
    chunked = pa.concat_tables([table(ROWS[:1]), table(ROWS[1:3]), table(ROWS[3:])])
    assert chunked.column("astr").num_chunks == 3
    events = pa.chunked_array([timestamps([T0, T0]), timestamps([EPOCH, T_NEG])])
    decoded = decode_all(codec, codec.encode(chunked, events, None))
    assert [d[2] for d in decoded if d] == expected(ROWS)
    assert [d[0] for d in decoded if d] == [T0_US, T0_US, 0, -1]


def test_arrays_all_empty_or_null() -> None:
    """Array columns with no element at all in the batch (empty frame buffers)."""
    schema = [Field("ai", Array(Int64)), Field("astr", Array(String))]
    codec = ValueCodec(view(schema))
    data = pa.table({"ai": pa.array([[], None], pa.list_(pa.int64())),
                     "astr": pa.array([None, []], pa.list_(pa.string()))})
    decoded = decode_all(codec, codec.encode(data, timestamps([T0, T0]), None))
    assert [d[2] for d in decoded if d] == [[[], None], [None, []]]


def test_null_list_backed_by_elements() -> None:
    """A null list entry whose offsets still span elements (valid Arrow) decodes as None, and its
    neighbours keep their own elements."""
    offsets = pa.array([0, 2, 4, 5], pa.int32())
    values = pa.array([1, 2, 3, 4, 5], pa.int64())
    lists = pa.ListArray.from_arrays(offsets, values, mask=pa.array([False, True, False]))
    assert lists.to_pylist() == [[1, 2], None, [5]]
    codec = ValueCodec(view([Field("ai", Array(Int64))]))
    decoded = decode_all(codec, codec.encode(pa.table({"ai": lists}), timestamps([T0] * 3), None))
    assert [d[2] for d in decoded if d] == [[[1, 2]], [None], [[5]]]


def test_input_types_converted_to_declared_types() -> None:
    """Narrower or differently-encoded input columns are stored as the declared type."""
    schema = [Field("f32", Float32), Field("i64", Int64), Field("s", String), Field("t", UnixTimestamp),
              Field("d", UnixTimestamp), Field("us", UnixTimestamp), Field("ns", UnixTimestamp)]
    codec = ValueCodec(view(schema))
    data = pa.table({
        "f32": pa.array([0.5, None], pa.float64()),
        "i64": pa.array([7, -8], pa.int32()),
        "s": pa.array(["x", "y"]).dictionary_encode(),
        "t": pa.array([T0, None], pa.timestamp("us")),  # naive: UTC
        "d": pa.array([date(2026, 1, 2), None], pa.date32()),
        "us": pa.array([T0_US, None], pa.int64()),  # integers are epoch microseconds
        "ns": pa.array([T0, T_NEG], pa.timestamp("ns", "UTC")),
    })
    ev_ns = pa.array([T0, T0], pa.timestamp("ns", "UTC"))  # event times in another unit
    decoded = decode_all(codec, codec.encode(data, ev_ns, None))
    assert decoded[0] == (T0_US, NO_CREATED, [0.5, 7, "x", T0, datetime(2026, 1, 2, tzinfo=UTC), T0, T0])
    assert decoded[1] == (T0_US, NO_CREATED, [None, -8, "y", None, None, None, T_NEG])


def test_large_string_and_array_of_timestamps_and_bytes() -> None:
    schema = [Field("s", String), Field("at", Array(UnixTimestamp)), Field("aby", Array(Bytes))]
    codec = ValueCodec(view(schema))
    data = pa.table({
        "s": pa.array(["ü", None], pa.large_string()),
        "at": pa.array([[T0, None, T_NEG], []], pa.list_(pa.timestamp("us", "UTC"))),
        "aby": pa.array([[b"", None, b"\x00\xff"], None], pa.list_(pa.binary())),
    })
    decoded = decode_all(codec, codec.encode(data, timestamps([T0, T0]), None))
    assert [d[2] for d in decoded if d] == [["ü", [T0, None, T_NEG], [b"", None, b"\x00\xff"]], [None, [], None]]


def test_one_feature_no_fixed_columns() -> None:
    codec = ValueCodec(view([Field("s", String)]))
    values = codec.encode(pa.table({"s": pa.array(["abc", None])}), timestamps([T0, EPOCH]), None)
    assert [codec.decode(v) for v in values.to_pylist()] == [(T0_US, NO_CREATED, ["abc"]), (0, NO_CREATED, [None])]


# -- header and layout -------------------------------------------------------------------------


def test_header_is_big_endian_event_then_created() -> None:
    """The newest-wins Lua script reads the first 16 bytes as two big-endian int64."""
    codec = ValueCodec(view(ALL_TYPES))
    created = timestamps([T_NEG, None, T0, EPOCH])
    values = codec.encode(table(), timestamps([T0, EPOCH, T_NEG, T0]), created).to_pylist()
    assert [struct.unpack(">qq", v[:16]) for v in values] == [
        (T0_US, -1), (0, NO_CREATED), (-1, T0_US), (T0_US, 0),
    ]
    assert NO_CREATED == -(2**63)
    assert values[0][16:20] == codec.layout_id
    assert HEADER.size == 20


def test_decode_rejects_other_layouts() -> None:
    base = [Field("a", Int64), Field("b", String)]
    codec = ValueCodec(view(base))
    value = codec.encode(pa.table({"a": [1], "b": ["x"]}), timestamps([T0]), None)[0].as_py()
    assert codec.decode(value) == (T0_US, NO_CREATED, [1, "x"])
    for other in (
        [Field("a", Int64), Field("b", String), Field("c", Int64)],  # a feature added
        [Field("a", Int32), Field("b", String)],  # a type changed
        [Field("b", String), Field("a", Int64)],  # reordered
        [Field("a", Int64), Field("c", String)],  # renamed
        [Field("a", Int64), Field("b", Array(String))],
    ):
        assert ValueCodec(view(other)).decode(value) is None, other
    # The layout depends on the schema only, not on the view's name.
    assert ValueCodec(view(base, name="w")).decode(value) == (T0_US, NO_CREATED, [1, "x"])


# -- KeyCodec ----------------------------------------------------------------------------------

TRICKY = ["plain", "a|b", "50%", "%7C", "|", "{x}", "}{", "é日本", "", "a%7Cb", "%25"]


def test_key_format() -> None:
    codec = KeyCodec("proj", "stats", ("user_id",))
    assert codec.key([42]) == b"proj:stats:{42}"
    assert codec.key([-7]) == b"proj:stats:{-7}"
    assert codec.key(["a|b{c}%"]) == b"proj:stats:{a%7Cb%7Bc%7D%25}"
    assert codec.prefix == "proj:stats:"
    assert codec.pattern() == "proj:stats:{*"
    two = KeyCodec("proj", "v", ("a", "b"))
    assert two.key([1, "x"]) == b"proj:v:{1|x}"


def test_keys_from_arrow_equal_key_strings() -> None:
    codec = KeyCodec("p", "v", ("k",))
    arrow = codec.keys_from_arrow([pa.array(TRICKY)])
    assert arrow.type == pa.binary()
    assert arrow.to_pylist() == [codec.key([t]) for t in TRICKY]
    large = codec.keys_from_arrow([pa.array(TRICKY, pa.large_string())])
    assert large.to_pylist() == [codec.key([t]) for t in TRICKY]


@pytest.mark.parametrize("arrow_type", [pa.int8(), pa.int32(), pa.int64(), pa.uint16(), pa.uint64()])
def test_keys_from_arrow_equal_key_ints(arrow_type: pa.DataType) -> None:
    codec = KeyCodec("p", "v", ("k",))
    values = [0, 1, 99, 127] + ([-1, -128] if pa.types.is_signed_integer(arrow_type) else [])
    assert codec.keys_from_arrow([pa.array(values, arrow_type)]).to_pylist() == [codec.key([v]) for v in values]


def test_keys_from_arrow_two_keys_and_slices() -> None:
    codec = KeyCodec("p", "v", ("a", "b"))
    left = [1, 2, -3, 4, 5]
    right = ["x|y", "", "{}", "%", "ü"]
    arrow = codec.keys_from_arrow([pa.array(left), pa.array(right)])
    assert arrow.to_pylist() == [codec.key([a, b]) for a, b in zip(left, right, strict=True)]
    sliced = codec.keys_from_arrow([pa.array(left).slice(2), pa.array(right).slice(2)])
    assert sliced.to_pylist() == [codec.key([a, b]) for a, b in zip(left[2:], right[2:], strict=True)]
    # String then integer key, too.
    swapped = KeyCodec("p", "v", ("b", "a"))
    assert swapped.keys_from_arrow([pa.array(right), pa.array(left)]).to_pylist() == [
        swapped.key([b, a]) for a, b in zip(left, right, strict=True)
    ]


def test_keys_are_injective() -> None:
    one = KeyCodec("p", "v", ("k",))
    keys = [one.key([t]) for t in TRICKY]
    assert len(set(keys)) == len(TRICKY)
    assert one.key(["%7C"]) != one.key(["|"])
    assert one.key(["%7C"]) == b"p:v:{%257C}"
    two = KeyCodec("p", "v", ("a", "b"))
    pairs = [("a|b", "c"), ("a", "b|c"), ("a|b|c", ""), ("", "a|b|c"), ("a%7Cb", "c"), ("a", "%7Cb|c")]
    pair_keys = [two.key(list(p)) for p in pairs]
    assert len(set(pair_keys)) == len(pairs)
    arrow = two.keys_from_arrow([pa.array([p[0] for p in pairs]), pa.array([p[1] for p in pairs])])
    assert arrow.to_pylist() == pair_keys
    # ("a|b",) under one key never collides with ("a", "b") under two keys of the same view name.
    assert one.key(["a|b"]).split(b":", 2)[2] != two.key(["a", "b"]).split(b":", 2)[2]


def _hash_tag(key: bytes) -> bytes:
    start = key.index(b"{")
    return key[start + 1 : key.index(b"}", start + 1)]


def test_hash_tag_is_the_entity_part() -> None:
    for values, entity in (([42], b"42"), (["a{b}|c"], b"a%7Bb%7D%7Cc"), (["日"], "日".encode())):
        assert _hash_tag(KeyCodec("p", "stats", ("user_id",)).key(values)) == entity
    a = KeyCodec("p", "profile", ("user_id", "country"))
    b = KeyCodec("p", "orders", ("user_id", "country"))
    for values in ([1, "FR"], [2, "a}{b"], [3, "%"]):
        ka, kb = a.key(values), b.key(values)
        assert ka != kb
        assert _hash_tag(ka) == _hash_tag(kb) == a.entity_key(values).encode()
        assert ka.endswith(b"{" + _hash_tag(ka) + b"}")


def test_views_of_one_entity_share_a_cluster_slot() -> None:
    a = KeyCodec("p", "profile", ("user_id",))
    b = KeyCodec("p", "orders_with_a_longer_name", ("user_id",))
    for value in [1, 123456789, "x", "a{b}c", "|", "%", "ü"]:
        assert key_slot(a.key([value])) == key_slot(b.key([value])), value
    slots = {key_slot(a.key([v])) for v in range(50)}
    assert len(slots) > 10  # different entities spread over slots


def test_empty_string_entity_shares_a_cluster_slot() -> None:
    """Views of one entity share a slot even when its key is the empty string. Today the key ends in
    ``{}``, an empty hash tag, which Redis Cluster ignores (it hashes the whole key instead), so the
    two views land in different slots: this test fails until the codec encodes "" as a non-empty tag."""
    a = KeyCodec("p", "profile", ("user_id",))
    b = KeyCodec("p", "orders", ("user_id",))
    assert key_slot(a.key([""])) == key_slot(b.key([""]))


@pytest.mark.parametrize("bad", [True, False, 1.5, 2.0, None, b"bytes", [1]])
def test_key_rejects_non_int_non_str(bad: Any) -> None:
    codec = KeyCodec("p", "stats", ("user_id",))
    with pytest.raises(OnlineStoreError, match=r"join key 'user_id' of view 'stats' must be an integer or a string, got"):
        codec.key([bad])


def test_key_error_names_the_offending_key() -> None:
    codec = KeyCodec("p", "v", ("user_id", "country"))
    with pytest.raises(OnlineStoreError, match=r"join key 'country' of view 'v'.* got float 1\.5"):
        codec.key([1, 1.5])
    with pytest.raises(ValueError):  # wrong number of values (zip strict)
        codec.key([1])


def test_keys_from_arrow_rejects_nulls_and_other_types() -> None:
    codec = KeyCodec("p", "stats", ("user_id",))
    with pytest.raises(OnlineStoreError, match=r"join key 'user_id' of view 'stats' has null values"):
        codec.keys_from_arrow([pa.array([1, None, 3])])
    with pytest.raises(OnlineStoreError, match=r"join key 'user_id' of view 'stats' has null values"):
        codec.keys_from_arrow([pa.array(["a", None])])
    with pytest.raises(OnlineStoreError, match=r"join key 'user_id' of view 'stats' has type double"):
        codec.keys_from_arrow([pa.array([1.0, 2.0])])
    with pytest.raises(OnlineStoreError, match=r"join key 'user_id' of view 'stats' has type bool"):
        codec.keys_from_arrow([pa.array([True])])
    two = KeyCodec("p", "v", ("a", "b"))
    with pytest.raises(OnlineStoreError, match=r"join key 'b' of view 'v' has type float"):
        two.keys_from_arrow([pa.array([1]), pa.array([1.5], pa.float32())])


@pytest.mark.parametrize("name", ["Int32", "Int64", "Float32", "Float64", "String", "Bool", "UnixTimestamp", "Bytes",
                                  "Array(Float32)", "Array(String)", "Array(UnixTimestamp)"])
def testpolars_types_of_online_responses_match_the_arrow_types(name: str) -> None:
    """to_polars maps feature types directly (no pyarrow conversion, which imports pandas); the
    mapping must agree with Arrow's."""
    import pyarrow as pa

    from featurestore.online.retrieval import polars_type
    from featurestore.types import parse_dtype

    dtype = parse_dtype(name)
    expected = pl.from_arrow(pa.array([], type=dtype.to_arrow())).dtype  # type: ignore[union-attr]
    assert polars_type(dtype) == expected


@settings(max_examples=300, deadline=None)
@given(cases(entities=9))
def test_decoding_many_values_column_by_column_equals_decoding_each(
    case: tuple[list[ViewRequest], list[list[bytes | None]]]
) -> None:
    """Above a few entities a view's values are decoded column-wise with numpy; the statuses, event
    times and values are those of decoding value by value."""
    requests, raw = case
    plan = OnlineRead("p", requests, {"user_id": list(range(9))})
    now = NOW_US
    by_columns = plan.decode_views(raw, now)
    one_by_one = [OnlineRead("p", requests, {"user_id": [i]}).decode_views([[group[i]] for group in raw], now)
                  for i in range(9)]
    for v, view in enumerate(by_columns):
        assert view.statuses == [row[v].statuses[0] for row in one_by_one]
        assert view.event_us == [row[v].event_us[0] for row in one_by_one]
        for c, column in enumerate(view.columns):
            expected = [row[v].columns[c][0] for row in one_by_one]
            assert [_same(a) for a in column] == [_same(b) for b in expected]


def _same(value: Any) -> Any:
    """The value and its type (True == 1 in Python, but a bool must stay a bool); NaN, which is
    unequal to itself, by its representation."""
    return type(value), repr(value) if isinstance(value, float) and value != value else value
