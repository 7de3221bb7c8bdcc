"""``Client``: the remote twin of ``FeatureStore`` for online reads, training sets and pushes.

    client = Client("127.0.0.1:6566")
    client.get_online_features("fraud_model_v1", [{"user_id": 1}])   # an OnlineResponse
    client.get_historical_features(entity_df, ["user_profile:age"])   # a Polars DataFrame
    client.push("user_web_sessions", rows, to="online")

Same signatures and return types as the in-process methods; server errors come back as
``RemoteError`` with the gRPC status code and the server's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from featurestore.definitions import FeatureService
from featurestore.errors import FeatureStoreError
from featurestore.online.retrieval import OnlineResponse, entity_columns
from featurestore.remote import messages
from featurestore.remote.columns import entity_column, is_key_column, request_column
from featurestore.v1 import feature_store_pb2 as pb
from featurestore.v1 import feature_store_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    import grpc
    import polars as pl

Features = Sequence[str] | FeatureService | str


class RemoteError(FeatureStoreError):
    """The feature server answered with an error status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.transient = code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")


class Client:
    """A connection to a feature server (``featurestore serve``)."""

    def __init__(
        self, target: str = "127.0.0.1:6566", *, token: str | None = None, root_certificates: bytes | None = None,
        tls: bool = False, timeout: float | None = 10.0,
    ) -> None:
        import grpc

        # Training sets arrive in large messages: lift gRPC's 4 MB default.
        options = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]
        if tls or root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            channel = grpc.secure_channel(target, credentials, options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        self.target = target
        self.timeout = timeout
        self._channel = channel
        self._stub = pb_grpc.FeatureStoreServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def __repr__(self) -> str:
        return f"Client({self.target!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        import grpc

        try:
            return method(request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _remote_error(exc) from None

    def get_online_features(
        self, features: Features, entity_rows: Any, *, full_feature_names: bool = False, timeout: float | None = None
    ) -> OnlineResponse:
        request = pb.GetOnlineFeaturesRequest(full_feature_names=full_feature_names)
        _set_features(request, features)
        columns = entity_columns(entity_rows)
        for name, values in columns.items():
            if is_key_column(values):
                request.entities[name].CopyFrom(entity_column(name, values))
            else:  # a request value of an on-demand feature (a float, a timestamp...)
                request.request_data[name].CopyFrom(request_column(name, values))
        response = messages.online_response_from_pb(self._call(self._stub.GetOnlineFeatures, request, timeout))
        # Protobuf maps have no order: give the entity columns back in the caller's order.
        response.entity_columns = {name: response.entity_columns.get(name, columns[name]) for name in columns}
        return response

    def get_historical_features(
        self, entity_df: Any, features: Features, *, full_feature_names: bool = False,
        timestamp_column: str = "event_timestamp", timeout: float | None = None,
    ) -> pl.DataFrame:
        import grpc
        import polars as pl
        import pyarrow as pa

        from featurestore.store import to_arrow_table

        request = pb.GetHistoricalFeaturesRequest(
            arrow_ipc=messages.table_to_ipc(to_arrow_table(entity_df)), full_feature_names=full_feature_names,
            timestamp_column=timestamp_column,
        )
        _set_features(request, features)
        try:
            stream = self._stub.GetHistoricalFeatures(
                request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata)
            tables = [messages.ipc_to_table(message.arrow_ipc) for message in stream]
        except grpc.RpcError as exc:
            raise _remote_error(exc) from None
        result = pl.from_arrow(pa.concat_tables(tables)) if tables else pl.DataFrame()
        assert isinstance(result, pl.DataFrame)
        return result

    def push(self, view_name: str, data: Any, to: str = "online", *, timeout: float | None = None) -> int:
        from featurestore.store import PUSH_TARGETS, to_arrow_table

        if to not in PUSH_TARGETS:
            raise FeatureStoreError(f"push(to=...) must be one of {', '.join(PUSH_TARGETS)}, got {to!r}")
        request = pb.PushRequest(feature_view=view_name, arrow_ipc=messages.table_to_ipc(to_arrow_table(data)),
                                 to=messages.PUSH_TARGETS[to])
        return int(self._call(self._stub.Push, request, timeout).rows)

    def list_feature_views(self, *, timeout: float | None = None) -> list[pb.FeatureViewInfo]:
        return list(self._call(self._stub.ListFeatureViews, pb.ListFeatureViewsRequest(), timeout).feature_views)

    def get_feature_service(self, name: str, *, timeout: float | None = None) -> pb.GetFeatureServiceResponse:
        return self._call(self._stub.GetFeatureService, pb.GetFeatureServiceRequest(name=name), timeout)


def _set_features(request: Any, features: Features) -> None:
    if isinstance(features, FeatureService):
        request.feature_service = features.name
    elif isinstance(features, str) and ":" not in features:
        request.feature_service = features
    else:
        refs = [features] if isinstance(features, str) else list(features)
        request.feature_list.refs.extend(refs)


def _remote_error(exc: grpc.RpcError) -> RemoteError:
    code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return RemoteError(code, details or "")
