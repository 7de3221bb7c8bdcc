"""Conversions between the library's results and the API's messages, shared by server and client."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from featurestore.online.retrieval import FieldStatus, OnlineResponse
from featurestore.remote.columns import fill_column, from_column
from featurestore.types import parse_dtype
from featurestore.v1 import feature_store_pb2 as pb

if TYPE_CHECKING:
    import pyarrow as pa

# Field status -> the API's enum value (shared with remote.wire, which writes the same numbers).
STATUS_TO_PB = {
    FieldStatus.PRESENT: pb.FIELD_STATUS_PRESENT,
    FieldStatus.NOT_FOUND: pb.FIELD_STATUS_NOT_FOUND,
    FieldStatus.OUTSIDE_MAX_AGE: pb.FIELD_STATUS_OUTSIDE_MAX_AGE,
    FieldStatus.IMPUTED: pb.FIELD_STATUS_IMPUTED,
}
_STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}
PUSH_TARGETS = {
    "online": pb.PUSH_TARGET_ONLINE,
    "offline": pb.PUSH_TARGET_OFFLINE,
    "online_and_offline": pb.PUSH_TARGET_ONLINE_AND_OFFLINE,
}
PUSH_TARGET_NAMES = {v: k for k, v in PUSH_TARGETS.items()} | {pb.PUSH_TARGET_UNSPECIFIED: "online"}


def online_response_to_pb(
    response: OnlineResponse, entity_columns: dict[str, pb.Column]
) -> pb.GetOnlineFeaturesResponse:
    """Any online response (for example with on-demand features computed) as the API message."""
    message = pb.GetOnlineFeaturesResponse()
    for name, column in entity_columns.items():
        message.entities[name].CopyFrom(column)
    for name, values in response.values.items():
        stamps = [0 if t is None else int(t.timestamp() * 1_000_000) for t in response.event_timestamps[name]]
        dtype = response.dtypes[name]
        feature = message.features.add(
            name=name, dtype=repr(dtype), statuses=[STATUS_TO_PB[s] for s in response.statuses[name]],
            event_timestamps=stamps,
        )
        fill_column(feature.values, values, dtype)
    return message


def online_response_from_pb(message: pb.GetOnlineFeaturesResponse) -> OnlineResponse:
    from featurestore.online.codec import micros_to_datetime

    entities = {name: from_column(column) for name, column in message.entities.items()}
    values: dict[str, list[Any]] = {}
    statuses: dict[str, list[FieldStatus]] = {}
    stamps: dict[str, list[Any]] = {}
    dtypes: dict[str, Any] = {}
    # The features of one view share their statuses and event times: convert each distinct list once.
    seen: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[list[FieldStatus], list[Any]]] = {}
    for feature in message.features:
        values[feature.name] = from_column(feature.values)
        raw = (tuple(feature.statuses), tuple(feature.event_timestamps))
        converted = seen.get(raw)
        if converted is None:
            converted = seen[raw] = (
                [_STATUS_FROM_PB[s] for s in raw[0]],
                # 0 stands for "no event time" (nothing found, or an imputed value without one).
                [None if t == 0 else micros_to_datetime(t) for t in raw[1]],
            )
        statuses[feature.name], stamps[feature.name] = converted
        dtypes[feature.name] = _dtype(feature.dtype)
    return OnlineResponse(entities, values, statuses, stamps, dtypes)


@lru_cache(maxsize=256)
def _dtype(name: str) -> Any:
    return parse_dtype(name)


def table_to_ipc(table: pa.Table | pa.RecordBatch) -> bytes:
    """An Arrow IPC stream of ``table`` (schema and batches)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write(table)
    return bytes(sink.getvalue().to_pybytes())


def ipc_to_table(data: bytes) -> pa.Table:
    import pyarrow as pa

    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()
