"""The hand-written response encoder gives exactly the message protobuf's own API builds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.online.retrieval import FieldStatus, ViewValues
from featurestore.remote import messages, wire
from featurestore.remote.columns import entity_column, fill_column
from featurestore.types import parse_dtype
from featurestore.v1 import feature_store_pb2 as pb

INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
TIMES = st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC))
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "Int64": INT64,
    "Int32": INT32,
    "Float64": st.floats(allow_nan=True, allow_infinity=True),
    "Float32": st.floats(width=32, allow_nan=False),
    "String": st.text(max_size=12),
    "Bool": st.booleans(),
    "Bytes": st.binary(max_size=12),
    "UnixTimestamp": TIMES,
}
DTYPES = [*SCALARS, "Array(Int64)", "Array(Float32)", "Array(String)"]


def values_of(dtype: str, n: int) -> st.SearchStrategy[list[Any]]:
    if dtype.startswith("Array("):
        element = SCALARS[dtype[len("Array(") : -1]]
        item: st.SearchStrategy[Any] = st.lists(element, max_size=4)
    else:
        item = SCALARS[dtype]
    return st.lists(st.none() | item, min_size=n, max_size=n)


@st.composite
def responses(draw: st.DrawFn) -> tuple[list[ViewValues], dict[str, pb.Column]]:
    n = draw(st.integers(1, 9))  # both sides of wire._FEW
    entities = {"user_id": entity_column("user_id", draw(st.lists(INT64, min_size=n, max_size=n)))}
    if draw(st.booleans()):
        entities["merchant"] = entity_column("merchant", draw(st.lists(st.text(max_size=6), min_size=n, max_size=n)))
    views = []
    for v in range(draw(st.integers(1, 3))):
        dtypes = draw(st.lists(st.sampled_from(DTYPES), min_size=1, max_size=5))
        names = tuple(f"v{v}__f{i}" for i in range(len(dtypes)))
        statuses = draw(st.lists(st.sampled_from(list(FieldStatus)), min_size=n, max_size=n))
        stamps = draw(st.lists(st.none() | INT64, min_size=n, max_size=n))
        columns = [draw(values_of(d, n)) for d in dtypes]
        views.append(ViewValues(names, [parse_dtype(d) for d in dtypes], columns, statuses, stamps))
    return views, entities


def built_by_protobuf(views: list[ViewValues], entities: dict[str, pb.Column]) -> pb.GetOnlineFeaturesResponse:
    """The same response built through protobuf's API: what the encoder must match."""
    message = pb.GetOnlineFeaturesResponse()
    for name, column in entities.items():
        message.entities[name].CopyFrom(column)
    for view in views:
        statuses = [messages.STATUS_TO_PB[s] for s in view.statuses]
        stamps = [0 if t is None else t for t in view.event_us]
        for name, dtype, values in zip(view.names, view.dtypes, view.columns, strict=True):
            feature = message.features.add(name=name, dtype=repr(dtype), statuses=statuses, event_timestamps=stamps)
            fill_column(feature.values, values, dtype)
    return message


def encoded(views: list[ViewValues], entities: dict[str, pb.Column]) -> bytes:
    return wire.online_response(views, [(k, c.SerializeToString()) for k, c in entities.items()])


@settings(max_examples=300, deadline=None)
@given(responses())
def test_the_bytes_parse_to_the_message_protobuf_builds(case: tuple[list[ViewValues], dict[str, pb.Column]]) -> None:
    views, entities = case
    ours = pb.GetOnlineFeaturesResponse.FromString(encoded(views, entities))
    reference = built_by_protobuf(views, entities)
    # Compared as deterministic bytes: NaN values would make message equality false on both sides.
    assert ours.SerializeToString(deterministic=True) == reference.SerializeToString(deterministic=True)


def test_a_known_response_reads_back_value_by_value() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    views = [ViewValues(
        ("age", "country", "seen", "scores"),
        [parse_dtype("Int64"), parse_dtype("String"), parse_dtype("UnixTimestamp"), parse_dtype("Array(Float64)")],
        [[41, None], ["NL", None], [when, None], [[0.5, -1.0], None]],
        [FieldStatus.PRESENT, FieldStatus.NOT_FOUND], [1_700_000_000_000_000, None],
    )]
    message = pb.GetOnlineFeaturesResponse.FromString(
        encoded(views, {"user_id": entity_column("user_id", [7, -8])}))
    assert list(message.entities["user_id"].int64_values.values) == [7, -8]
    age, country, seen, scores = message.features
    assert (age.name, age.dtype, list(age.values.int64_values.values), list(age.values.nulls)) == (
        "age", "Int64", [41, 0], [False, True])
    assert list(age.statuses) == [pb.FIELD_STATUS_PRESENT, pb.FIELD_STATUS_NOT_FOUND]
    assert list(age.event_timestamps) == [1_700_000_000_000_000, 0]
    assert list(country.values.string_values.values) == ["NL", ""]
    assert list(seen.values.timestamp_values.values) == [
        (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1), 0]
    assert [list(r.double_values.values) for r in scores.values.array_values.rows] == [[0.5, -1.0], []]
    assert scores.dtype == "Array(Float64)"


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DTYPES).flatmap(lambda d: st.tuples(st.just(d), values_of(d, 1))), st.sampled_from(list(FieldStatus)))
def test_one_entity_shortcuts_match_protobuf(case: tuple[str, list[Any]], status: FieldStatus) -> None:
    """One entity, one value per feature (the server's commonest answer) takes shortcuts per type."""
    dtype, values = case
    views = [ViewValues(("f",), [parse_dtype(dtype)], [values], [status], [123])]
    entities = {"user_id": entity_column("user_id", [1])}
    ours = pb.GetOnlineFeaturesResponse.FromString(encoded(views, entities))
    reference = built_by_protobuf(views, entities)
    assert ours.SerializeToString(deterministic=True) == reference.SerializeToString(deterministic=True)
