"""The Redis online store (standalone, TLS/AUTH through the URL, or Redis Cluster).

Writes go through one Lua script that takes many keys per call and writes each value only if its
version ``(event_ts, created_ts)``, the value's first 16 bytes, is not older than the stored one,
so a late or replayed batch never goes back in time. When the caller's keys are distinct (a
materialization writes one row per entity), each slice is first sent as ``MSETEX ... NX``, which
sets all its keys only if none of them exists: for keys Redis does not hold yet, newest-wins is
trivially met, and the command costs the server less than half of the script. A slice with any
stored key is sent again through the script. On a standalone server the commands are
framed in the Redis protocol straight from Arrow buffers and pipelined, with a few calls in flight:
no Python object per row, and memory bounded by the batch size. On a cluster, each batch is sorted by
slot (computed per key in Python) and every slot's run of keys becomes script calls, framed the
same way and pipelined to the primary that owns the slot.

Reads are one ``MGET`` of every view's and entity's key: a single command and round trip for any
number of views and entities (one per node on a cluster).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featurestore.config import redact_url
from featurestore.errors import OnlineStoreError
from featurestore.online.base import Progress

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.config import RepoConfig
    from featurestore.online.embedded import EmbeddedServer

# KEYS: the keys. ARGV[1]: seconds to live (0: no expiry). ARGV[2]: "1" when the server has
# MSETEX. ARGV[3]: "1" when no key repeats in this call. ARGV[i + 3]: the value for KEYS[i].
# Returns how many values were accepted.
# One MGET, the version checks, then one MSET/MSETEX: per-key redis.call()s cost more than the
# checks (2.5-3.4 us a key against about 1.7). Versions are compared as numbers: exact for
# microsecond times before the year 2255. A key repeated in one call is compared with its pending
# value, so the newest (or, on ties, the last) wins as if written one by one; calls whose keys are
# all distinct (materialization: one row per entity) skip that bookkeeping, 15-20% of the script.
NEWEST_WINS = """
local ttl = tonumber(ARGV[1])
local unique = ARGV[3] == '1'
local current = redis.call('MGET', unpack(KEYS))
local unpack_version = struct.unpack
local pending = {}
local args = {0}
local n = 1
local accepted = 0
for i = 1, #KEYS do
  local new = ARGV[i + 3]
  local old = current[i]
  local at = nil
  if not unique then
    at = pending[KEYS[i]]
    if at then old = args[at] end
  end
  local newer = (not old) or #old < 16
  if not newer then
    local oe, oc = unpack_version('>i8>i8', old)
    local ne, nc = unpack_version('>i8>i8', new)
    newer = ne > oe or (ne == oe and nc >= oc)
  end
  if newer then
    accepted = accepted + 1
    if at then
      args[at] = new
    else
      args[n + 1] = KEYS[i]
      args[n + 2] = new
      n = n + 2
      if not unique then pending[KEYS[i]] = n end
    end
  end
end
if n > 1 then
  if ttl == 0 then
    redis.call('MSET', unpack(args, 2, n))
  elseif ARGV[2] == '1' then
    args[1] = (n - 1) / 2
    args[n + 1] = 'EX'
    args[n + 2] = ttl
    redis.call('MSETEX', unpack(args, 1, n + 2))
  else
    for j = 2, n, 2 do
      redis.call('SET', args[j], args[j + 1], 'EX', ttl)
    end
  end
end
return accepted
"""
CALL_KEYS = 500  # keys per script call: the server runs each call in about a millisecond
IN_FLIGHT = 64  # calls in flight: enough queued work (~50 ms) to cover encoding the next batch
SCAN_COUNT = 1000
# All-new slices go through MSETEX NX until more of them have failed than this, and than have succeeded
# (a store that already holds the keys: each failed try costs the server ~0.3 us a key).
NX_TRIES = 4


class RedisOnlineStore:
    """An ``OnlineStore`` on one Redis server or cluster."""

    def __init__(self, client: Any, target: _Target) -> None:
        self.client = client
        self.cluster = target.cluster
        self.where = target.where
        self._target = target

    @classmethod
    def from_config(cls, config: RepoConfig) -> RedisOnlineStore:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.cluster import RedisCluster
        from redis.retry import Retry

        # One quick retry covers a dropped idle connection; more would hide an outage for seconds.
        options: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": 60,
                                   "retry": Retry(ExponentialBackoff(cap=0.1, base=0.01), 1)}
        target = _Target.of(config)
        client: Any
        try:
            if target.url is None:
                client = redis.Redis(**target.server_kwargs, **options)
            elif target.cluster:
                client = RedisCluster.from_url(target.url, **options)
            else:
                client = redis.Redis.from_url(target.url, **options)
        except (redis.RedisError, OSError, ValueError) as exc:
            target.release()
            raise OnlineStoreError(
                f"cannot connect to the online store {target.where}: {exc}", transient=True
            ) from None
        return cls(client, target)

    def __repr__(self) -> str:
        return f"RedisOnlineStore({self.where})"

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self._target.release()

    # -- writes ----------------------------------------------------------------------------------

    def write(
        self, batches: Iterable[tuple[pa.Array, pa.Array]], ttl_seconds: int | None,
        progress: Progress | None = None, *, distinct: bool = False,
    ) -> int:
        ttl = str(max(int(ttl_seconds or 0), 0)).encode()
        with self._errors("write to"):
            if self.cluster:
                return self._write_cluster(batches, ttl, progress, distinct)
            return self._write_packed(batches, ttl, progress, distinct)

    def _write_packed(
        self, batches: Iterable[tuple[pa.Array, pa.Array]], ttl: bytes, progress: Progress | None, distinct: bool
    ) -> int:
        pipe = _WritePipe(self.client, ttl, distinct)
        try:
            for keys, values in batches:
                calls = _Calls(keys, values, ttl, distinct)
                for a in range(0, len(keys), CALL_KEYS):
                    pipe.send(calls, a, min(a + CALL_KEYS, len(keys)))
                if progress is not None:
                    progress(len(keys))
            return pipe.finish()
        finally:
            pipe.close()

    def _write_cluster(
        self, batches: Iterable[tuple[pa.Array, pa.Array]], ttl: bytes, progress: Progress | None, distinct: bool
    ) -> int:
        """Keys sorted by slot; one script call per slot run, pipelined per primary node."""
        import numpy as np
        import pyarrow as pa
        from redis.crc import key_slot

        pipes: dict[str, _WritePipe] = {}
        try:
            for keys, values in batches:
                slots = np.fromiter((key_slot(k) for k in keys.to_pylist()), dtype=np.int32, count=len(keys))
                order = np.argsort(slots, kind="stable")  # stable: rows of one key keep their order
                slots = slots[order]
                take = pa.array(order)
                calls = _Calls(keys.take(take), values.take(take), ttl, distinct)
                starts = np.flatnonzero(np.diff(slots, prepend=-1))
                ends = np.append(starts[1:], len(slots))
                for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
                    node = self.client.nodes_manager.get_node_from_slot(int(slots[a]))
                    pipe = pipes.get(node.name)
                    if pipe is None:
                        pipe = pipes[node.name] = _WritePipe(node.redis_connection, ttl, distinct)
                    for lo in range(a, b, CALL_KEYS):
                        pipe.send(calls, lo, min(lo + CALL_KEYS, b))
                if progress is not None:
                    progress(len(keys))
            return sum(pipe.finish() for pipe in pipes.values())
        finally:
            for pipe in pipes.values():
                pipe.close()

    # -- reads -----------------------------------------------------------------------------------

    def read(self, keys: Sequence[Sequence[bytes]]) -> list[list[bytes | None]]:
        flat = [k for group in keys for k in group]
        if not flat:
            return [[] for _ in keys]
        with self._errors("read from"):
            # One MGET for every view and entity: a single command, a single round trip.
            values = self.client.mget_nonatomic(flat) if self.cluster else self.client.mget(flat)
        return _split(values, keys)

    # -- removal ---------------------------------------------------------------------------------

    def delete_matching(self, pattern: str, progress: Progress | None = None) -> int:
        """SCAN (incremental, never ``KEYS``) and ``UNLINK`` (freed in the background) in batches."""
        deleted = 0
        batch: list[bytes] = []
        with self._errors("delete from"):
            for key in self.client.scan_iter(match=pattern, count=SCAN_COUNT):
                batch.append(key)
                if len(batch) >= SCAN_COUNT:
                    deleted += self._unlink(batch, progress)
                    batch = []
            if batch:
                deleted += self._unlink(batch, progress)
        return deleted

    def _unlink(self, keys: list[bytes], progress: Progress | None) -> int:
        n = int(self.client.unlink(*keys))
        if progress is not None:
            progress(len(keys))
        return n

    # -- errors ----------------------------------------------------------------------------------

    def _errors(self, verb: str) -> Any:
        return _ErrorMapper(self, verb)


@dataclass
class _Target:
    """Where the configured online store is: a URL, or the embedded server (acquired here)."""

    url: str | None
    cluster: bool
    where: str
    embedded: EmbeddedServer | None = None

    @classmethod
    def of(cls, config: RepoConfig) -> _Target:
        if config.online_store_url is None:
            from featurestore.online import embedded

            assert config.online_store_path is not None
            server = embedded.acquire(config.online_store_path)
            return cls(None, False, f"the embedded server at 127.0.0.1:{server.port}", server)
        return cls(config.online_store_url, config.online_store_cluster, redact_url(config.online_store_url))

    @property
    def server_kwargs(self) -> dict[str, Any]:
        assert self.embedded is not None
        return self.embedded.connection_kwargs()

    def release(self) -> None:
        """Give back the embedded server (its last user in the process stops it); once only."""
        if self.embedded is not None:
            from featurestore.online import embedded

            server, self.embedded = self.embedded, None
            embedded.release(server)


class _Calls:
    """One batch's keys and values framed in the Redis protocol, to send in slices as commands.

    The framings are built on first use: a write of new keys needs only the key-value pairs, a
    script call needs keys and values apart."""

    def __init__(self, keys: pa.Array, values: pa.Array, ttl: bytes, distinct: bool = False) -> None:
        import pyarrow.compute as pc

        self.keys, self.values = keys, values
        self.ttl = ttl
        self.ttl_frame = _bulk(ttl)
        # Distinct keys (promised, or counted: about 5 ms per 50k): the script then skips tracking
        # repeats within a call, and a slice may be tried as one set-if-none-exist command.
        self.unique = distinct or len(keys) < 2 or pc.count_distinct(keys).as_py() == len(keys)
        self._lengths: tuple[pa.Array, pa.Array] | None = None
        self._apart: tuple[memoryview, Any, memoryview, Any] | None = None
        self._pairs: tuple[memoryview, Any] | None = None

    def script(self, sha: bytes, msetex: bool, a: int, b: int) -> list[Any]:
        """``EVALSHA sha n key... ttl msetex unique value...`` for rows ``[a, b)``."""
        if self._apart is None:
            import pyarrow.compute as pc

            key_length, value_length = self.lengths()
            self._apart = (*_buffers(pc.binary_join_element_wise(b"$", key_length, b"\r\n", self.keys, b"\r\n", b"")),
                           *_buffers(pc.binary_join_element_wise(b"$", value_length, b"\r\n", self.values, b"\r\n",
                                                                 b"")))
        key_data, key_offsets, value_data, value_offsets = self._apart
        count = b"%d" % (b - a)
        head = b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$%d\r\n%s\r\n" % (6 + 2 * (b - a), sha, len(count), count)
        return [
            head,
            key_data[key_offsets[a] : key_offsets[b]],
            self.ttl_frame,
            b"$1\r\n1\r\n" if msetex else b"$1\r\n0\r\n",
            b"$1\r\n1\r\n" if self.unique else b"$1\r\n0\r\n",
            value_data[value_offsets[a] : value_offsets[b]],
        ]

    def set_if_none_exist(self, msetex: bool, a: int, b: int) -> list[Any]:
        """``MSETEX n key value ... NX [EX ttl]`` (or ``MSETNX`` on servers without MSETEX, for
        keys that never expire) for rows ``[a, b)``: all set, or none if any key exists."""
        if self._pairs is None:  # key, value, key, value...
            import pyarrow.compute as pc

            key_length, value_length = self.lengths()
            self._pairs = _buffers(pc.binary_join_element_wise(
                b"$", key_length, b"\r\n", self.keys, b"\r\n$", value_length, b"\r\n", self.values, b"\r\n", b""))
        data, offsets = self._pairs
        pairs = data[offsets[a] : offsets[b]]
        if not msetex:
            return [b"*%d\r\n$6\r\nMSETNX\r\n" % (1 + 2 * (b - a)), pairs]
        count = _bulk(b"%d" % (b - a))
        expiry = b"" if self.ttl == b"0" else b"$2\r\nEX\r\n" + self.ttl_frame
        args = 3 + 2 * (b - a) + (2 if expiry else 0)
        return [b"*%d\r\n$6\r\nMSETEX\r\n%s" % (args, count), pairs, b"$2\r\nNX\r\n" + expiry]

    def lengths(self) -> tuple[pa.Array, pa.Array]:
        """The byte lengths of keys and of values, as decimal text (RESP bulk string headers)."""
        if self._lengths is None:
            self._lengths = (_decimal_lengths(self.keys), _decimal_lengths(self.values))
        return self._lengths


@dataclass
class _Sent:
    """A command in flight: which rows it writes and whether it is an all-or-nothing try."""

    calls: _Calls
    a: int
    b: int
    command: list[Any]
    if_none_exist: bool


class _WritePipe:
    """Newest-wins writes pipelined on one connection, a few commands in flight at a time.

    With ``distinct`` (no key repeats across the whole write), a slice of a batch whose keys are
    distinct is first tried as one set-if-none-exist command; if any key exists, it goes through
    the script. Without it, every slice goes through the script, in order: a retried slice would
    land after later ones, and rows tied on both times must keep their write order.
    """

    def __init__(self, client: Any, ttl: bytes, distinct: bool) -> None:
        self.client = client
        self.sha = str(client.script_load(NEWEST_WINS)).encode()
        self.msetex = _has_command(client, "MSETEX")  # Valkey 9.1+, Redis 8.4+
        # Expiring keys need MSETEX; keys without expiry can use MSETNX, which every server has.
        self.try_new = distinct and (self.msetex or ttl == b"0")
        self.new_ok = self.new_failed = 0
        self.pool = client.connection_pool
        self.conn = self.pool.get_connection()
        self.inflight: deque[_Sent] = deque()
        self.written = 0
        self.clean = False

    def send(self, calls: _Calls, a: int, b: int) -> None:
        if self.try_new and calls.unique:
            self._send(_Sent(calls, a, b, calls.set_if_none_exist(self.msetex, a, b), True))
        else:
            self._send(_Sent(calls, a, b, calls.script(self.sha, self.msetex, a, b), False))
        if len(self.inflight) >= IN_FLIGHT:
            self._settle()

    def _send(self, sent: _Sent) -> None:
        self.conn.send_packed_command(sent.command, check_health=False)
        self.inflight.append(sent)

    def _settle(self) -> None:
        import redis

        sent = self.inflight.popleft()
        try:
            self._take(sent, self.conn.read_response())
        except redis.exceptions.NoScriptError:
            # The server lost its scripts (restart, SCRIPT FLUSH). Every call still in flight was
            # sent before the reload: collect the replies, load the script, resend the failed calls.
            failed = [sent]
            while self.inflight:
                pending = self.inflight.popleft()
                try:
                    self._take(pending, self.conn.read_response())
                except redis.exceptions.NoScriptError:
                    failed.append(pending)
            self.client.script_load(NEWEST_WINS)
            for retry in failed:
                self._send(retry)

    def _take(self, sent: _Sent, reply: Any) -> None:
        if not sent.if_none_exist:
            self.written += int(reply)
        elif int(reply):
            self.written += sent.b - sent.a
            self.new_ok += 1
        else:  # some key exists: compare versions; stop trying once most tries fail
            self.new_failed += 1
            self.try_new = self.new_failed <= max(NX_TRIES, self.new_ok)
            self._send(_Sent(sent.calls, sent.a, sent.b, sent.calls.script(self.sha, self.msetex, sent.a, sent.b),
                             False))

    def finish(self) -> int:
        while self.inflight:
            self._settle()
        self.clean = True
        return self.written

    def close(self) -> None:
        if not self.clean:
            self.conn.disconnect()  # replies may be pending: never hand this connection back in use
        self.pool.release(self.conn)


class _ErrorMapper:
    """Turns redis-py errors into ``OnlineStoreError`` naming the server (never its password)."""

    def __init__(self, store: RedisOnlineStore, verb: str) -> None:
        self.store, self.verb = store, verb

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        import redis

        if exc is None or not isinstance(exc, redis.RedisError | OSError):
            return
        transient = isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError)
        hint = " (is it running? check online_store.url in featurestore.yaml)" if transient else ""
        raise OnlineStoreError(
            f"cannot {self.verb} the online store, {self.store.where}{hint}: {type(exc).__name__}: {exc}",
            transient=transient,
        ) from exc


def _has_command(client: Any, name: str) -> bool:
    try:
        info = client.execute_command("COMMAND", "INFO", name)
    except Exception:
        return False
    if isinstance(info, dict):
        return bool(info.get(name.lower()))
    return bool(info and info[0])


def _split(values: Sequence[bytes | None], groups: Sequence[Sequence[bytes]]) -> list[list[bytes | None]]:
    """The replies of one MGET over all groups' keys, cut back into groups."""
    out, pos = [], 0
    for group in groups:
        out.append(list(values[pos : pos + len(group)]))
        pos += len(group)
    return out


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _decimal_lengths(arr: pa.Array) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(pc.cast(pc.binary_length(arr), pa.string()), pa.binary())


def _buffers(framed: pa.Array) -> tuple[memoryview, Any]:
    """A binary array's data, all in one buffer, and its row offsets."""
    import numpy as np

    offsets = np.frombuffer(framed.buffers()[1], dtype=np.int32)[framed.offset : framed.offset + len(framed) + 1]
    data = framed.buffers()[2]
    return memoryview(data if data is not None else b""), offsets


class AsyncRedisReader:
    """Reads for the asyncio feature server: the same one-round-trip ``MGET`` as ``read``.

    A standalone server (the embedded one, or a ``redis://``/``rediss://``/``unix://`` URL) is read
    through one pipelined connection (``featurestore.online.pipelined``: a quarter of redis-py's
    CPU per call); a cluster through redis-py's asyncio cluster client.
    """

    def __init__(self, client: Any, target: _Target) -> None:
        self.client = client
        self.cluster = target.cluster
        self.where = target.where
        self._target = target

    @classmethod
    def from_config(cls, config: RepoConfig, *, timeout: float = 5.0, max_connections: int = 256) -> AsyncRedisReader:
        from featurestore.online.pipelined import PipelinedReader

        target = _Target.of(config)
        client: Any
        if target.url is None:
            client = PipelinedReader(**target.server_kwargs, timeout=timeout)
        elif target.cluster:
            from redis.asyncio.cluster import RedisCluster

            from featurestore.online.embedded import no_retry

            # No retries: the server answers UNAVAILABLE within the caller's deadline instead.
            client = RedisCluster.from_url(target.url, max_connections=max_connections, socket_connect_timeout=timeout,
                                           socket_timeout=timeout, retry=no_retry())
        else:
            client = PipelinedReader(target.url, timeout=timeout)
        return cls(client, target)

    async def read(self, keys: Sequence[Sequence[bytes]]) -> list[list[bytes | None]]:
        """Raises redis errors as they are: the server maps them to status codes."""
        flat = [k for group in keys for k in group]
        if not flat:
            return [[] for _ in keys]
        values = await (self.client.mget_nonatomic(flat) if self.cluster else self.client.mget(flat))
        return _split(values, keys)

    async def ping(self) -> bool:
        import redis

        try:
            return bool(await self.client.ping())
        except (redis.RedisError, OSError):
            return False

    async def close(self) -> None:
        try:
            await self.client.aclose()
        finally:
            self._target.release()
