"""The one-entity writer gives exactly the bytes of the general path (decode, then write), for any
schema, any requested subset and order of features, nulls, stale, missing and foreign values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore import Entity, FeatureView, Field, FileSource
from featurestore.offline.retrieval import ViewRequest
from featurestore.online.codec import HEADER, ValueCodec
from featurestore.online.retrieval import OnlineRead, view_plans
from featurestore.remote import wire
from featurestore.remote.transcode import OneEntityWriter
from featurestore.types import Array, Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp
from featurestore.v1 import feature_store_pb2 as pb

USER = Entity("user", join_keys=["user_id"])
NOW = datetime(2026, 6, 1, tzinfo=UTC)
NOW_US = 1780272000000000  # NOW in epoch microseconds
TYPES: dict[str, tuple[Any, pa.DataType, st.SearchStrategy[Any]]] = {
    "Int64": (Int64, pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "Int32": (Int32, pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    "Float64": (Float64, pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    "Float32": (Float32, pa.float32(), st.floats(width=32, allow_nan=False)),
    # long strings too: a feature entry of 128 bytes or more has a two-byte length
    "String": (String, pa.string(), st.text(max_size=10) | st.text(min_size=120, max_size=140)),
    "Bytes": (Bytes, pa.binary(), st.binary(max_size=10)),
    "Bool": (Bool, pa.bool_(), st.booleans()),
    "UnixTimestamp": (UnixTimestamp, pa.timestamp("us", "UTC"),
                      st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC))),
    "Array(Int64)": (Array(Int64), pa.list_(pa.int64()), st.lists(st.none() | st.integers(-5, 2**40), max_size=3)),
    "Array(String)": (Array(String), pa.list_(pa.string()), st.lists(st.none() | st.text(max_size=4), max_size=3)),
}
# Event times around the view's ttl (1 day before NOW), so both PRESENT and OUTSIDE_MAX_AGE come up.
EVENTS = st.sampled_from([NOW - timedelta(hours=1), NOW - timedelta(days=2), NOW, datetime(1969, 12, 31, tzinfo=UTC)])


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[ViewRequest], list[list[bytes | None]]]:
    requests, raw = [], []
    for v in range(draw(st.integers(1, 3))):
        kinds = draw(st.lists(st.sampled_from(list(TYPES)), min_size=1, max_size=11))  # 11: two null bytes
        fields = [Field(f"f{i}", TYPES[k][0]) for i, k in enumerate(kinds)]
        ttl = draw(st.sampled_from([None, timedelta(days=1)]))
        view = FeatureView(f"v{v}", entities=[USER], source=FileSource("x.parquet"), schema=fields, ttl=ttl)
        wanted = draw(st.lists(st.sampled_from([f.name for f in fields]), min_size=1, unique=True))
        requests.append(ViewRequest(view, tuple(wanted), tuple(f"v{v}__{n}" for n in wanted)))
        state = draw(st.sampled_from(["stored", "stored", "stored", "missing", "foreign", "short"]))
        if state == "missing":
            raw.append([None])
            continue
        row = {f.name: draw(st.none() | TYPES[k][2]) for f, k in zip(fields, kinds, strict=True)}
        table = pa.table({f.name: pa.array([row[f.name]], TYPES[k][1]) for f, k in zip(fields, kinds, strict=True)})
        event = pa.array([draw(EVENTS)], pa.timestamp("us", "UTC"))
        value = ValueCodec(view).encode(table, event, None)[0].as_py()
        if state == "foreign":  # written under another schema: another layout id
            value = value[:16] + b"\xff\xff\xff\xff" + value[HEADER.size :]
        elif state == "short":
            value = value[:10]
        raw.append([value])
    return requests, raw


@settings(max_examples=400, deadline=None)
@given(cases())
def test_the_same_bytes_as_decoding_then_writing(case: tuple[list[ViewRequest], list[list[bytes | None]]]) -> None:
    requests, raw = case
    plan = OnlineRead("p", requests, {"user_id": [7]})
    general = wire.online_response(plan.decode_views(raw, NOW_US), [])
    fast = b"".join(OneEntityWriter(view_plans("p", requests)).write(raw, NOW_US))
    assert fast == general
    # and what a client parses from it has a status per feature
    message = pb.GetOnlineFeaturesResponse.FromString(fast)
    assert [f.name for f in message.features] == [n for r in requests for n in r.output_names]


def test_a_known_value_reads_back() -> None:
    fields = [Field("score", Float64), Field("n", Int64), Field("name", String), Field("ok", Bool)]
    view = FeatureView("v", entities=[USER], source=FileSource("x.parquet"), schema=fields)
    table = pa.table({"score": [0.5], "n": [-3], "name": ["ü"], "ok": [None]},
                     schema=pa.schema([("score", pa.float64()), ("n", pa.int64()), ("name", pa.string()),
                                       ("ok", pa.bool_())]))
    value = ValueCodec(view).encode(table, pa.array([NOW], pa.timestamp("us", "UTC")), None)[0].as_py()
    request = ViewRequest(view, ("ok", "name", "score", "n"), ("ok", "name", "score", "n"))
    fast = b"".join(OneEntityWriter(view_plans("p", [request])).write([[value]], NOW_US))
    features = {f.name: f for f in pb.GetOnlineFeaturesResponse.FromString(fast).features}
    assert list(features["score"].values.double_values.values) == [0.5]
    assert list(features["n"].values.int64_values.values) == [-3]
    assert list(features["name"].values.string_values.values) == ["ü"]
    assert list(features["ok"].values.nulls) == [True]
    assert {tuple(f.statuses) for f in features.values()} == {(pb.FIELD_STATUS_PRESENT,)}
    assert {tuple(f.event_timestamps) for f in features.values()} == {(NOW_US,)}
