"""Random views and what Redis holds for their entities, written by the real encoder: for the
tests of the fast read paths (one-entity transcoding, column-wise decoding) against ``decode``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import strategies as st

from featurestore import Entity, FeatureView, Field, FileSource
from featurestore.offline.retrieval import ViewRequest
from featurestore.online.codec import HEADER, ValueCodec
from featurestore.types import Array, Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp

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
def cases(draw: st.DrawFn, entities: int = 1) -> tuple[list[ViewRequest], list[list[bytes | None]]]:
    """Up to three views, some of their features in any order, and ``entities`` stored values per
    view: present, stale, missing, written under another layout, or cut short."""
    requests, raw = [], []
    for v in range(draw(st.integers(1, 3))):
        kinds = draw(st.lists(st.sampled_from(list(TYPES)), min_size=1, max_size=11))  # 11: two null bytes
        fields = [Field(f"f{i}", TYPES[k][0]) for i, k in enumerate(kinds)]
        ttl = draw(st.sampled_from([None, timedelta(days=1)]))
        view = FeatureView(f"v{v}", entities=[USER], source=FileSource("x.parquet"), schema=fields, ttl=ttl)
        wanted = draw(st.lists(st.sampled_from([f.name for f in fields]), min_size=1, unique=True))
        requests.append(ViewRequest(view, tuple(wanted), tuple(f"v{v}__{n}" for n in wanted)))
        values: list[bytes | None] = []
        for _ in range(entities):
            state = draw(st.sampled_from(["stored", "stored", "stored", "missing", "foreign", "short"]))
            if state == "missing":
                values.append(None)
                continue
            row = {f.name: draw(st.none() | TYPES[k][2]) for f, k in zip(fields, kinds, strict=True)}
            table = pa.table({f.name: pa.array([row[f.name]], TYPES[k][1])
                              for f, k in zip(fields, kinds, strict=True)})
            event = pa.array([draw(EVENTS)], pa.timestamp("us", "UTC"))
            value = ValueCodec(view).encode(table, event, None)[0].as_py()
            if state == "foreign":  # written under another schema: another layout id
                value = value[:16] + b"\xff\xff\xff\xff" + value[HEADER.size :]
            elif state == "short":
                value = value[:10]
            values.append(value)
        raw.append(values)
    return requests, raw
