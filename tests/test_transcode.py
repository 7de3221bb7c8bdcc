"""The one-entity writer gives exactly the bytes of the general path (decode, then write), for any
schema, any requested subset and order of features, nulls, stale, missing and foreign values."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings

from featurestore import FeatureView, Field, FileSource
from featurestore.offline.retrieval import ViewRequest
from featurestore.online.codec import ValueCodec
from featurestore.online.retrieval import OnlineRead, view_plans
from featurestore.remote import wire
from featurestore.remote.transcode import OneEntityWriter
from featurestore.types import Bool, Float64, Int64, String
from featurestore.v1 import feature_store_pb2 as pb
from tests.stored_values import NOW, NOW_US, USER, cases


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
