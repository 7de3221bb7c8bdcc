"""A pipelined asyncio Redis client for the feature server's reads: one connection, many calls in flight.

redis-py's asyncio client checks a connection out of its pool for every command and runs its retry,
observability and reply-callback layers around it: about 105 us of CPU per ``MGET`` on the machines
this was measured on, more than the rest of an online lookup. Here commands go to one shared
connection and replies are matched to calls in order (a Redis server answers a connection's
commands in order), parsed by hiredis: about 25 us per ``MGET``. A call on an idle connection is
written at once; calls made while others are in flight are written together at the end of the
loop iteration, one socket write for all of them, which under load cuts the CPU of both this
process and the server per call (one read and one reply write on the server for many calls). Standalone servers
only (a cluster goes through redis-py's cluster client). The connection is opened on first use and
again after it is lost. Errors are redis-py's exception types, so callers handle both clients alike.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis
from redis.asyncio.connection import RedisSSLContext, SSLConnection, UnixDomainSocketConnection, parse_url

_SSL_OPTIONS = {  # URL query option -> RedisSSLContext argument
    "ssl_keyfile": "keyfile", "ssl_certfile": "certfile", "ssl_cert_reqs": "cert_reqs",
    "ssl_ca_certs": "ca_certs", "ssl_ca_data": "ca_data", "ssl_ca_path": "ca_path",
    "ssl_check_hostname": "check_hostname", "ssl_min_version": "min_version", "ssl_ciphers": "ciphers",
    "ssl_password": "password",
}


def pack(*args: bytes | str | int) -> bytes:
    """One command in the Redis protocol."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


# Error replies that mean "not now" rather than "wrong command", as redis-py classifies them: a
# server loading its data after a restart, or one that wants a password, is unavailable.
_UNAVAILABLE = {"LOADING": redis.BusyLoadingError, "NOAUTH": redis.AuthenticationError,
                "WRONGPASS": redis.AuthenticationError, "MASTERDOWN": redis.ConnectionError}


def server_error(message: str) -> redis.RedisError:
    """The redis-py exception for an error reply (``LOADING ...`` is a ``BusyLoadingError``...)."""
    kind = _UNAVAILABLE.get(message.split(" ", 1)[0], redis.ResponseError)
    return kind(message)


class _Replies(asyncio.Protocol):
    """One connection: calls wait in order; each reply settles the oldest waiting call."""

    def __init__(self) -> None:
        self.parser = hiredis.Reader(protocolError=redis.ConnectionError, replyError=redis.ResponseError)
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        # Commands of this loop iteration not written yet (see call).
        self.outbox: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        try:
            while (reply := self.parser.gets()) is not False:
                waiter = self.waiting.popleft()
                if waiter.done():  # its caller gave up (deadline, cancel): drop the reply, keep the order
                    continue
                if isinstance(reply, redis.ResponseError):
                    waiter.set_exception(server_error(str(reply)))
                else:
                    waiter.set_result(reply)
        except redis.ConnectionError as exc:  # the stream is not Redis protocol: nothing after it is trustworthy
            self.fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(redis.ConnectionError(f"connection to the online store lost: {exc or 'closed by the server'}"))

    def fail(self, exc: BaseException) -> None:
        """Fail every waiting call and close: the next call opens a new connection."""
        if self.lost is None:
            self.lost = exc
        self.outbox.clear()
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def call(self, command: bytes) -> asyncio.Future[Any]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if not self.waiting and not self.outbox:  # an idle connection: nothing to batch with, send now
            self.transport.write(command)
        else:  # calls in flight: send with the others of this loop iteration, one write for all
            if not self.outbox:
                loop.call_soon(self._flush)
            self.outbox.append(command)
        self.waiting.append(waiter)
        return waiter

    def _flush(self) -> None:
        data = b"".join(self.outbox)
        self.outbox.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class PipelinedReader:
    """``MGET`` and ``PING`` over one pipelined connection to a standalone Redis server.

    Either ``url`` (``redis://``, ``rediss://`` with redis-py's ``ssl_*`` URL options, ``unix://``)
    or ``host``/``port``/``password`` (the embedded server). ``timeout`` bounds connecting and
    ``ping``; a ping that gets no reply in time closes the connection, failing the calls behind it.
    """

    def __init__(self, url: str | None = None, *, host: str = "127.0.0.1", port: int = 6379,
                 password: str | None = None, timeout: float = 5.0) -> None:
        self.options: dict[str, Any] = dict(parse_url(url)) if url is not None else {
            "host": host, "port": port, "password": password}
        self.timeout = timeout
        self._conn: _Replies | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute(self, command: bytes) -> Any:
        """Send one packed command and wait for its reply."""
        conn = self._conn
        if conn is None or conn.lost is not None:
            conn = await self._connect()
        return await conn.call(command)

    async def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        head = b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)
        reply: list[bytes | None] = await self.execute(head + b"".join([b"$%d\r\n%s\r\n" % (len(k), k) for k in keys]))
        return reply

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                return bool(await self.execute(b"*1\r\n$4\r\nPING\r\n") == b"PONG")
        except TimeoutError:
            self.reset(redis.TimeoutError(f"the online store did not answer within {self.timeout:g} s"))
            return False
        except (redis.RedisError, OSError):
            return False

    def reset(self, exc: BaseException) -> None:
        if self._conn is not None:
            self._conn.fail(exc)
            self._conn = None

    async def aclose(self) -> None:
        self.reset(redis.ConnectionError("the reader is closed"))

    async def _connect(self) -> _Replies:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # calls arriving while it connects share one new connection
            if self._conn is not None and self._conn.lost is None:
                return self._conn
            try:
                async with asyncio.timeout(self.timeout):
                    conn = await self._open()
            except TimeoutError:
                raise redis.TimeoutError(f"connecting to the online store timed out after {self.timeout:g} s") from None
            except OSError as exc:
                raise redis.ConnectionError(f"cannot connect to the online store: {exc}") from None
            self._conn = conn
            return conn

    async def _open(self) -> _Replies:
        loop = asyncio.get_running_loop()
        o = self.options
        cls = o.get("connection_class")
        conn: _Replies
        if cls is not None and issubclass(cls, UnixDomainSocketConnection):
            _, conn = await loop.create_unix_connection(_Replies, o["path"])
        else:
            tls: ssl.SSLContext | None = None
            if cls is not None and issubclass(cls, SSLConnection):
                tls = RedisSSLContext(**{arg: o[opt] for opt, arg in _SSL_OPTIONS.items() if opt in o}).get()
            host = o.get("host", "localhost")
            _, conn = await loop.create_connection(_Replies, host, o.get("port", 6379), ssl=tls,
                                                   server_hostname=host if tls is not None else None)
        try:
            if o.get("password"):
                auth = ("AUTH", o["username"], o["password"]) if o.get("username") else ("AUTH", o["password"])
                await conn.call(pack(*auth))  # WRONGPASS: an AuthenticationError (a ConnectionError)
            if o.get("db"):
                await conn.call(pack("SELECT", int(o["db"])))
        except BaseException:
            conn.fail(redis.ConnectionError("closed while setting up"))
            raise
        return conn
