"""The ``FeatureStoreService`` implementation: online reads on the event loop, the rest in threads.

Every call goes through ``_call``: it bounds concurrency (over the limit: RESOURCE_EXHAUSTED, never
an unbounded queue), maps errors to status codes (INVALID_ARGUMENT naming the bad ref, key or
type; NOT_FOUND for an unknown feature service; UNAVAILABLE when Redis is down; DEADLINE_EXCEEDED
when the client's deadline passes), and records a log line and metrics. With a ``ServedLog``
(``serve --log-sample``), a sampled ``GetOnlineFeatures`` call hands it references to its entities
and answer; the log writes them to the offline store in its own thread (``featurestore.skew``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2

from featurestore.errors import FeatureStoreError, PushError, RetrievalError, UnknownObjectError
from featurestore.imputation import fill_response, targets
from featurestore.on_demand import add_to_response
from featurestore.online.redis import AsyncRedisReader
from featurestore.online.retrieval import OnlineRead
from featurestore.remote import messages, wire
from featurestore.remote.columns import from_column
from featurestore.remote.transcode import OneEntityWriter
from featurestore.skew import ServedLog
from featurestore.store import FeatureStore
from featurestore.v1 import feature_store_pb2 as pb
from featurestore.v1 import feature_store_pb2_grpc as pb_grpc
from featurestore_server.metrics import Metrics
from featurestore_server.registry_cache import RegistryCache

log = logging.getLogger("featurestore.server")
SERVICE_NAME = "featurestore.v1.FeatureStoreService"
BATCH_BYTES = 1 << 20
# Methods whose handlers return the response already serialized (registered without a serializer).
PRESERIALIZED = frozenset({"GetOnlineFeatures"})
T = TypeVar("T")


class Overloaded(Exception):
    pass


class FeatureStoreServicer(pb_grpc.FeatureStoreServiceServicer):
    def __init__(
        self, store: FeatureStore, reader: AsyncRedisReader, registry: RegistryCache,
        health_servicer: health.aio.HealthServicer, metrics: Metrics, *, max_concurrency: int = 256,
        served_log: ServedLog | None = None,
    ) -> None:
        self.store = store
        self.reader = reader
        self.registry = registry
        self.health = health_servicer
        self.metrics = metrics
        self.max_concurrency = max_concurrency
        # A sample of served vectors goes here (None: logging is off, and costs nothing per call).
        self.served_log = served_log
        self.inflight = 0
        self.serving = True
        self._monitor: asyncio.Task[None] | None = None
        self._recheck = asyncio.Event()
        # Blocking work (training sets, pushes) runs here, not in asyncio's default executor, so
        # shutting down never waits for an abandoned DuckDB query.
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="featurestore-work")

    def start(self) -> None:
        self._monitor = asyncio.get_running_loop().create_task(self._watch_online_store())

    async def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    # -- plumbing --------------------------------------------------------------------------------

    async def _call(self, method: str, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]]) -> T:
        if self.inflight >= self.max_concurrency:
            self.metrics.observe(method, "RESOURCE_EXHAUSTED", 0.0)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"the server is at its limit of {self.max_concurrency} concurrent calls; retry later")
        self.inflight += 1
        began = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            remaining = context.time_remaining()
            try:
                if remaining is None:  # no deadline: no timer either
                    return await work()
                # asyncio.timeout, not wait_for: no extra task per call.
                async with asyncio.timeout(remaining):
                    return await work()
            except TimeoutError:
                code = grpc.StatusCode.DEADLINE_EXCEEDED
                await context.abort(code, f"{method} did not finish within the client's deadline")
            except UnknownObjectError as exc:
                code = grpc.StatusCode.NOT_FOUND
                await context.abort(code, str(exc))
            except (RetrievalError, PushError) as exc:
                code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, str(exc))
            except FeatureStoreError as exc:
                code = grpc.StatusCode.UNAVAILABLE if exc.transient else grpc.StatusCode.INTERNAL
                await context.abort(code, str(exc))
            except _redis_errors() as exc:
                code = grpc.StatusCode.UNAVAILABLE
                if _pool_exhausted(exc):  # a burst, not an outage: health stays as it is
                    await context.abort(code, f"all connections to the online store are busy; retry: {exc}")
                if self.serving:  # NOT_SERVING at once; the monitor's next ping decides when it returns
                    await self._set_serving(False)
                self._recheck.set()
                await context.abort(code, f"the online store is unavailable ({self.reader.where}): {exc}")
            raise AssertionError("unreachable")  # abort() raises
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            if context.done():  # the client gave up (deadline, cancel) while we answered: not our error
                code = grpc.StatusCode.CANCELLED if code == grpc.StatusCode.OK else code
                raise
            code = grpc.StatusCode.INTERNAL
            log.exception("unexpected error in %s", method)
            await context.abort(code, f"internal error: {type(exc).__name__}: {exc}")
            raise
        finally:
            self.inflight -= 1
            seconds = time.perf_counter() - began
            self.metrics.observe(method, code.name, seconds)
            # Successful calls log at DEBUG: at thousands of calls a second, INFO would cost more than the call.
            level = logging.DEBUG if code == grpc.StatusCode.OK else logging.INFO
            if log.isEnabledFor(level):
                log.log(level, "rpc", extra={"method": method, "code": code.name, "ms": round(seconds * 1000, 3)})

    async def _watch_online_store(self) -> None:
        """Health follows the online store: a ping every couple of seconds, or at once after a
        failed read; NOT_SERVING while it does not answer, SERVING again when it does."""
        while True:
            with contextlib.suppress(TimeoutError):
                # Every 2 s while it answers; every 0.25 s while it does not, to be back at once.
                await asyncio.wait_for(self._recheck.wait(), timeout=2.0 if self.serving else 0.25)
            self._recheck.clear()
            up = await self.reader.ping()
            if up != self.serving:
                await self._set_serving(up)
            if not up:
                await asyncio.sleep(0.25)

    async def _set_serving(self, up: bool) -> None:
        self.serving = up
        self.metrics.up.set(1 if up else 0)
        status = health_pb2.HealthCheckResponse.SERVING if up else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(SERVICE_NAME, status)
        await self.health.set("", status)
        log.warning("online store %s: reporting %s", "reachable" if up else "unreachable",
                    "SERVING" if up else "NOT_SERVING")

    # -- rpcs ------------------------------------------------------------------------------------

    async def GetOnlineFeatures(self, request: pb.GetOnlineFeaturesRequest, context: grpc.aio.ServicerContext) -> bytes:
        """Answers a serialized ``GetOnlineFeaturesResponse`` (``PRESERIALIZED``)."""

        async def work() -> bytes:
            features = _features(request)
            snapshot = self.registry.snapshot
            requests = snapshot.resolve(features, request.full_feature_names)
            service = requests.service
            imputed = service is not None and bool(service.imputation)
            if request.request_data and not requests.on_demand:
                names = sorted(request.request_data)
                raise RetrievalError(f"request_data {names} given, but no requested feature is an on-demand feature")
            keys = list(request.entities.items())  # a protobuf map: iterated once
            entities = {name: from_column(column) for name, column in keys}
            if not entities:
                raise RetrievalError("no entities given: set entities, e.g. {'user_id': int64_values [1, 2]}")
            # Request values may come in request_data or, as in the Python API, beside the keys.
            entities.update({name: from_column(column) for name, column in request.request_data.items()})
            plan = OnlineRead(self.store.project, requests, entities)
            raw = await self.reader.read(plan.key_groups)
            now_us = time.time_ns() // 1000  # judges max age; a logged call records it as its request time
            served_log = self.served_log
            if not requests.on_demand and not imputed:
                # Written as bytes directly (the method's serializer passes them through): see remote.wire.
                columns = [(k, c.SerializeToString()) for k, c in keys]
                logged = served_log is not None and served_log.sampled()
                if len(plan) == 1 and not logged:  # one entity: straight from the stored bytes
                    return b"".join(wire.entity_fields(columns) + _one_entity_writer(requests, plan).write(raw, now_us))
                views = plan.decode_views(raw, now_us)
                if logged:
                    assert served_log is not None
                    served_log.record_views(now_us, features, request.full_feature_names, entities, views)
                return wire.online_response(views, columns)
            response = add_to_response(plan.decode(raw, now_us), requests.on_demand, requests.hidden)
            if imputed:
                assert service is not None
                fitted = self.store.training_sets.imputation(service, None, cached=True)  # registry read <= 1/s
                response = fill_response(response, targets(service, requests), fitted)
            if served_log is not None and served_log.sampled():
                served_log.record_response(now_us, features, request.full_feature_names, entities, response)
            return messages.online_response_to_pb(response, dict(request.entities)).SerializeToString()

        return await self._call("GetOnlineFeatures", context, work)

    async def GetHistoricalFeatures(
        self, request: pb.GetHistoricalFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ArrowBatch]:
        async def work() -> Any:
            import polars as pl

            features = _features(request)
            if request.WhichOneof("entity_rows") == "path":
                path = self._readable_path(request.path)
                try:
                    entity: Any = await self._blocking(pl.read_parquet, path)
                except (OSError, pl.exceptions.PolarsError) as exc:
                    raise RetrievalError(f"cannot read entity rows from {request.path!r}: {exc}") from None
            else:
                entity = _arrow(request.arrow_ipc, "entity rows")
            return await self._blocking(
                self.store.get_historical_features, entity,
                features if isinstance(features, str) else list(features),
                full_feature_names=request.full_feature_names,
                timestamp_column=request.timestamp_column or "event_timestamp",
            )

        result = (await self._call("GetHistoricalFeatures", context, work)).to_arrow()
        # About 1 MB per message, well under gRPC's default 4 MB limit of clients.
        rows = max(1, int(BATCH_BYTES * result.num_rows / max(result.nbytes, 1)))
        batches = result.to_batches(max_chunksize=rows) or [result.slice(0, 0)]  # an empty set keeps its schema
        for batch in batches:
            yield pb.ArrowBatch(arrow_ipc=messages.table_to_ipc(batch))

    async def Push(self, request: pb.PushRequest, context: grpc.aio.ServicerContext) -> pb.PushResponse:
        async def work() -> pb.PushResponse:
            if request.to not in messages.PUSH_TARGET_NAMES:
                raise PushError(f"unknown push target {request.to}: use ONLINE, OFFLINE or ONLINE_AND_OFFLINE")
            table = _arrow(request.arrow_ipc, "pushed rows")
            to = messages.PUSH_TARGET_NAMES[request.to]
            rows = await self._blocking(self.store.push, request.feature_view, table, to)
            return pb.PushResponse(rows=rows)

        return await self._call("Push", context, work)

    async def ListFeatureViews(
        self, request: pb.ListFeatureViewsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFeatureViewsResponse:
        async def work() -> pb.ListFeatureViewsResponse:
            out = pb.ListFeatureViewsResponse()
            for view in self.registry.snapshot.views.values():
                info = out.feature_views.add(
                    name=view.name, entities=list(view.entity_names), join_keys=list(view.join_keys),
                    ttl_seconds=0.0 if view.ttl is None else view.ttl.total_seconds(), online=view.online,
                    description=view.description, owner=view.owner,
                    version=self.registry.snapshot.versions.get(view.name, 0),
                )
                info.tags.update(dict(view.tags))
                info.features.extend(pb.FeatureSpec(name=f.name, dtype=repr(f.dtype)) for f in view.features)
            return out

        return await self._call("ListFeatureViews", context, work)

    async def GetFeatureService(
        self, request: pb.GetFeatureServiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetFeatureServiceResponse:
        async def work() -> pb.GetFeatureServiceResponse:
            snapshot = self.registry.snapshot
            service = snapshot.service(request.name)
            refs = [f"{r.view.name}:{f}" for r in snapshot.resolve(request.name, False) for f in r.features]
            return pb.GetFeatureServiceResponse(name=service.name, features=refs, description=service.description)

        return await self._call("GetFeatureService", context, work)


    def _readable_path(self, path: str) -> str:
        """Entity-row files are read only from inside the repo folder: clients must not make the
        server read arbitrary files."""
        repo = self.store.repo_path.resolve()
        resolved = (repo / path).resolve()
        if not resolved.is_relative_to(repo):
            raise RetrievalError(f"path {path!r} is outside the repo folder; send the rows as arrow_ipc instead")
        return str(resolved)


def _arrow(data: bytes, what: str) -> Any:
    import pyarrow as pa

    try:
        return messages.ipc_to_table(data)
    except (pa.ArrowInvalid, OSError) as exc:
        raise RetrievalError(f"{what} are not an Arrow IPC stream: {exc}") from None


def _one_entity_writer(requests: Any, plan: OnlineRead) -> OneEntityWriter:
    """The request shape's writer, made on first use and kept with its resolved requests."""
    writer = requests.server_cache.get("one_entity_writer")
    if writer is None:
        writer = requests.server_cache["one_entity_writer"] = OneEntityWriter(plan.plans)
    return writer


def _features(request: Any) -> str | tuple[str, ...]:
    which = request.WhichOneof("features")
    if which == "feature_service":
        return str(request.feature_service)
    if which == "feature_list":
        return tuple(request.feature_list.refs)
    raise RetrievalError("set feature_list (refs like 'view:feature') or feature_service")


def _pool_exhausted(exc: BaseException) -> bool:
    import redis

    return isinstance(exc, redis.exceptions.MaxConnectionsError) or "No connection available" in str(exc)


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError)


def add_to_server(servicer: FeatureStoreServicer, server: grpc.aio.Server) -> None:
    """Register the service's methods, as the generated ``add_FeatureStoreServiceServicer_to_server``
    does, except that ``PRESERIALIZED`` methods' bytes go out as they are."""
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["FeatureStoreService"].methods:
        request, response = getattr(pb, method.input_type.name), getattr(pb, method.output_type.name)
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(
            getattr(servicer, method.name), request_deserializer=request.FromString,
            response_serializer=None if method.name in PRESERIALIZED else response.SerializeToString,
        )
    # Generic handlers only, no registered methods: see app.GenericHandlersOnly.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
