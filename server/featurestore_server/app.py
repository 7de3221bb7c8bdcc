"""Building and running the gRPC feature server (``featurestore serve``).

Loopback by default. Health (``grpc.health.v1``) and reflection are always on, so stock tools
(grpcurl, grpc_health_probe) work. With a token configured, every call but health and reflection
needs ``authorization: Bearer <token>``. SIGTERM (or SIGINT) starts a graceful drain: health turns
NOT_SERVING, new calls are refused, calls in flight get ``drain_seconds`` to finish. With
``log_sample`` above 0 a sample of ``GetOnlineFeatures`` calls is logged to the offline store for
``featurestore skew`` (see ``featurestore.skew``); the rest is written during the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hmac
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from featurestore.errors import ConfigError
from featurestore.online.redis import AsyncRedisReader
from featurestore.skew import ServedLog, served_log_path
from featurestore.store import FeatureStore
from featurestore.v1 import feature_store_pb2 as pb
from featurestore_server.metrics import Metrics
from featurestore_server.registry_cache import RegistryCache
from featurestore_server.service import SERVICE_NAME, FeatureStoreServicer, add_to_server

log = logging.getLogger("featurestore.server")
DEFAULT_PORT = 6566
TOKEN_ENV = "FEATURESTORE_SERVER_TOKEN"
# The log sample rate when ServerOptions.log_sample is 0 (worker processes get it this way too).
LOG_SAMPLE_ENV = "FEATURESTORE_SERVER_LOG_SAMPLE"
_OPEN_METHODS = ("/grpc.health.v1.", "/grpc.reflection.")


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_concurrency: int = 256
    metrics_port: int | None = None
    registry_refresh: float = 5.0
    drain_seconds: float = 10.0
    redis_timeout: float = 2.0
    workers: int = 1
    reuse_port: bool = False
    log_level: str = "info"
    # Fraction of GetOnlineFeatures calls whose served vectors are logged for skew measurement
    # (0: off, 1: every call); 0 falls back to $FEATURESTORE_SERVER_LOG_SAMPLE.
    log_sample: float = 0.0


def log_sample_rate(options: ServerOptions, environ: Mapping[str, str] | None = None) -> float:
    """The sample rate to log at: ``options.log_sample``, else ``$FEATURESTORE_SERVER_LOG_SAMPLE``, else 0."""
    environ = os.environ if environ is None else environ
    where, value = "--log-sample", options.log_sample
    if not value and environ.get(LOG_SAMPLE_ENV, "").strip():
        where, text = LOG_SAMPLE_ENV, environ[LOG_SAMPLE_ENV].strip()
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{LOG_SAMPLE_ENV} must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ConfigError(f"{where} must be between 0 (off) and 1 (every call), got {value!r}")
    return float(value)


class TokenAuth(grpc.aio.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` (compared in constant time)."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}".encode()

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if details.method.startswith(_OPEN_METHODS) or handler is None:
            return handler
        given = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(given).encode(), self.expected):
            return handler
        message = "missing or invalid bearer token: send metadata 'authorization: Bearer <token>'"

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            yield  # pragma: no cover - makes this an async generator

        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                deny_stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return grpc.unary_unary_rpc_method_handler(
            deny, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)


class GenericHandlersOnly:
    """Hands generated ``add_*_to_server`` functions the server's generic handlers only.

    grpc.aio keeps one pending request per registered method and waits on all of them (with
    ``asyncio.wait``) for every call it accepts: with the eleven methods of our service, health and
    reflection, that costs about 5% of the CPU of a lookup. Served through generic handlers (a dict
    lookup by method name) there is one pending request, and every method works the same.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        pass


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message and any structured fields."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "msg": record.getMessage()}
        data.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def event_loop_runner() -> asyncio.Runner:
    """A runner on uvloop when it is installed (the ``grpc`` extra has it on Linux and macOS): about
    a fifth less CPU per call than asyncio's own loop; asyncio's loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("featurestore.server")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def _spawn_workers(repo: Path, options: ServerOptions, port: int) -> list[subprocess.Popen[bytes]]:
    """``workers - 1`` more server processes on the same port (the kernel spreads connections)."""
    args = [sys.executable, "-c", "from featurestore.cli import main; main()", "serve", "--repo", str(repo),
            "--host", options.host, "--port", str(port), "--workers", "1", "--reuse-port",
            "--max-concurrency", str(options.max_concurrency), "--registry-refresh", str(options.registry_refresh),
            "--drain-seconds", str(options.drain_seconds), "--log-level", options.log_level]
    if options.tls_cert and options.tls_key:
        args += ["--tls-cert", str(options.tls_cert), "--tls-key", str(options.tls_key)]
    env = dict(os.environ)
    if options.token:
        env[TOKEN_ENV] = options.token
    env[LOG_SAMPLE_ENV] = repr(options.log_sample)
    workers = [subprocess.Popen([*args, "--token-env", TOKEN_ENV], env=env, stdout=subprocess.DEVNULL)
               for _ in range(options.workers - 1)]
    log.info("workers started", extra={"workers": options.workers, "pids": [w.pid for w in workers]})
    return workers


async def serve(repo: str | Path | None, options: ServerOptions, *, on_ready: Callable[[int], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run the server until SIGTERM/SIGINT (or ``stop`` is set), then drain and shut down."""
    options = dataclasses.replace(options, log_sample=log_sample_rate(options))
    store = FeatureStore(repo)
    served_log = ServedLog(served_log_path(store), options.log_sample) if options.log_sample > 0 else None
    reader = AsyncRedisReader.from_config(
        store.config, timeout=options.redis_timeout, max_connections=max(options.max_concurrency, 16)
    )
    registry = RegistryCache(store, options.registry_refresh)
    metrics = Metrics()
    health_servicer = health.aio.HealthServicer()
    servicer = FeatureStoreServicer(store, reader, registry, health_servicer, metrics,
                                    max_concurrency=options.max_concurrency, served_log=served_log)
    interceptors = [TokenAuth(options.token)] if options.token else []
    server = grpc.aio.server(interceptors=interceptors, options=[
        ("grpc.max_receive_message_length", 256 * 1024 * 1024),
        ("grpc.max_send_message_length", 256 * 1024 * 1024),
        # Several worker processes share one port; otherwise a second server on the port is an error.
        ("grpc.so_reuseport", 1 if options.workers > 1 or options.reuse_port else 0),
    ])
    add_to_server(servicer, server)
    generic = GenericHandlersOnly(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, generic)
    # What reflection.enable_server_reflection does for an aio server, through the generic handlers.
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection.aio.ReflectionServicer(
        [pb.DESCRIPTOR.services_by_name["FeatureStoreService"].full_name, health.SERVICE_NAME, reflection.SERVICE_NAME],
    ), generic)
    address = f"{options.host}:{options.port}"
    if options.tls_cert and options.tls_key:
        credentials = grpc.ssl_server_credentials([(options.tls_key.read_bytes(), options.tls_cert.read_bytes())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    metrics_http = metrics.serve_http(options.host, options.metrics_port) if options.metrics_port is not None else None

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
    await server.start()
    ok = await reader.ping()
    status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
    await health_servicer.set("", status)
    await health_servicer.set(SERVICE_NAME, status)
    servicer.start()  # health follows the online store from here on
    registry.start()
    if served_log is not None:
        served_log.start()
    log.info("serving", extra={"address": f"{options.host}:{port}", "project": store.project,
                               "tls": bool(options.tls_cert), "auth": bool(options.token),
                               "log_sample": options.log_sample, "event_loop": type(loop).__module__,
                               "served_log": str(served_log.root) if served_log is not None else None})
    workers = _spawn_workers(store.repo_path, options, port) if options.workers > 1 else []
    # Everything loaded so far (definitions, modules, codecs) lives as long as the server: move it out
    # of the collector's way, so that full collections stay short and calls see no long pauses.
    gc.collect()
    gc.freeze()
    if on_ready is not None:
        on_ready(port)
    try:
        await stop.wait()
    finally:
        log.info("draining", extra={"seconds": options.drain_seconds})
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        await health_servicer.enter_graceful_shutdown()
        await server.stop(options.drain_seconds)
        for worker in workers:  # they drain at the same time; the embedded Redis (ours) outlives them
            try:
                await asyncio.to_thread(worker.wait, options.drain_seconds + 5)
            except subprocess.TimeoutExpired:
                worker.kill()
        if served_log is not None:  # no call runs any more: write the rest of the sample
            try:
                await served_log.close()
            except Exception:
                log.exception("could not write the rest of the served-vector log")
        await servicer.stop()
        await registry.stop()
        await reader.close()
        store.close()
        if metrics_http is not None:
            metrics_http.shutdown()
        log.info("stopped")
