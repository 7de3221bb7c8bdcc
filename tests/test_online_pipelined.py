"""The feature server's pipelined reader, on a real Valkey server: order, batched writes,
cancellation, lost connections, stalls and bad credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis

from featurestore.online.embedded import _free_port
from featurestore.online.pipelined import PipelinedReader, pack


def run(fn: Callable[[PipelinedReader], Awaitable[Any]], reader_args: dict[str, Any]) -> Any:
    async def main() -> Any:
        reader = PipelinedReader(**reader_args)
        try:
            return await fn(reader)
        finally:
            await reader.aclose()

    return asyncio.run(main())


@pytest.fixture
def url(redis_server: Any) -> str:
    return f"redis://:{redis_server.password}@127.0.0.1:{redis_server.port}/3"  # database 3: SELECT is sent


@pytest.fixture
def keys(redis_server: Any, project_name: str) -> Iterator[list[bytes]]:
    admin = redis.Redis(**redis_server.connection_kwargs(), db=3)
    names = [f"{project_name}:{i}".encode() for i in range(300)]
    admin.mset({k: b"v%d" % i for i, k in enumerate(names) if i % 3})  # every third key is missing
    yield names
    admin.delete(*names)
    admin.close()


def expected(names: list[bytes]) -> list[bytes | None]:
    return [None if int(k.rsplit(b":", 1)[1]) % 3 == 0 else b"v" + k.rsplit(b":", 1)[1] for k in names]


def test_concurrent_calls_each_get_their_own_reply_in_order(url: str, keys: list[bytes]) -> None:
    groups = [keys[i : i + 1 + i % 7] for i in range(0, 280, 2)]

    async def calls(reader: PipelinedReader) -> list[list[bytes | None]]:
        return list(await asyncio.gather(*(reader.mget(g) for g in groups)))

    assert run(calls, {"url": url}) == [expected(g) for g in groups]


def test_calls_of_one_loop_iteration_go_out_in_one_write(url: str, keys: list[bytes], redis_client: Any) -> None:
    """The first call on an idle connection is written at once; the calls that join it while it is
    in flight are written together, so the server reads them in one go (and answers them so)."""
    groups = [keys[i : i + 3] for i in range(0, 150, 3)]

    async def calls(reader: PipelinedReader) -> tuple[list[Any], int]:
        await reader.ping()  # connected, so the reads counted below are only those of the calls
        before = redis_client.info("stats")["total_reads_processed"]
        answers = list(await asyncio.gather(*(reader.mget(g) for g in groups)))
        return answers, redis_client.info("stats")["total_reads_processed"] - before

    answers, reads = run(calls, {"url": url})
    assert answers == [expected(g) for g in groups]
    # 50 calls: the first alone, the 49 others in one write; the INFO call itself is one more read.
    # (Written one by one, the server would have read them in up to 50 reads.)
    assert reads <= 4, reads


def test_a_caller_that_gives_up_leaves_the_next_replies_in_order(
    url: str, keys: list[bytes], redis_client: Any
) -> None:
    async def calls(reader: PipelinedReader) -> tuple[Any, ...]:
        assert await reader.mget(keys[:2]) == expected(keys[:2])
        redis_client.execute_command("CLIENT", "PAUSE", "300", "ALL")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await reader.mget(keys[3:5])  # its reply comes after the pause, to nobody
        return tuple(await asyncio.gather(reader.mget(keys[6:8]), reader.mget(keys[9:12])))

    assert run(calls, {"url": url}) == (expected(keys[6:8]), expected(keys[9:12]))


def test_a_lost_connection_fails_the_waiting_calls_and_the_next_call_reconnects(
    url: str, keys: list[bytes], redis_client: Any
) -> None:
    async def calls(reader: PipelinedReader) -> list[bytes | None]:
        assert await reader.mget(keys[:3]) == expected(keys[:3])
        redis_client.execute_command("CLIENT", "PAUSE", "2000", "ALL")
        try:
            waiting = asyncio.ensure_future(reader.mget(keys[3:6]))
            await asyncio.sleep(0.05)
            redis_client.execute_command("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal")
            with pytest.raises(redis.ConnectionError, match="connection to the online store lost"):
                await waiting
        finally:
            redis_client.execute_command("CLIENT", "UNPAUSE")
        return await reader.mget(keys[6:9])

    assert run(calls, {"url": url}) == expected(keys[6:9])


def test_a_ping_without_reply_in_time_fails_the_calls_behind_it(url: str, keys: list[bytes], redis_client: Any) -> None:
    async def calls(reader: PipelinedReader) -> list[bytes | None]:
        assert await reader.ping()
        redis_client.execute_command("CLIENT", "PAUSE", "1000", "ALL")
        try:
            waiting = asyncio.ensure_future(reader.mget(keys[:3]))
            assert not await reader.ping()  # 0.2 s timeout
            with pytest.raises(redis.TimeoutError, match=r"did not answer within 0\.2 s"):
                await waiting
        finally:
            redis_client.execute_command("CLIENT", "UNPAUSE")
        return await reader.mget(keys[:3])

    assert run(calls, {"url": url, "timeout": 0.2}) == expected(keys[:3])


def test_errors_from_the_server_reach_the_caller_and_the_connection_stays_usable(url: str, keys: list[bytes]) -> None:
    async def calls(reader: PipelinedReader) -> list[bytes | None]:
        with pytest.raises(redis.ResponseError, match="unknown command"):
            await reader.execute(pack("NO-SUCH-COMMAND"))
        return await reader.mget(keys[:3])

    assert run(calls, {"url": url}) == expected(keys[:3])


def test_a_wrong_password_is_an_authentication_error(redis_server: Any) -> None:
    with pytest.raises(redis.AuthenticationError) as info:
        run(lambda reader: reader.mget([b"k"]), {"port": redis_server.port, "password": "not-the-password"})
    assert isinstance(info.value, redis.ConnectionError) and "not-the-password" not in str(info.value)


def test_nothing_listening_is_a_connection_error() -> None:
    port = _free_port("127.0.0.1")
    with pytest.raises(redis.ConnectionError, match="cannot connect to the online store"):
        run(lambda reader: reader.mget([b"k"]), {"url": f"redis://127.0.0.1:{port}/0"})
    assert run(lambda reader: reader.ping(), {"port": port}) is False


def test_error_replies_that_mean_unavailable_are_connection_errors() -> None:
    """A server loading its data after a restart answers ``-LOADING``: the feature server must say
    UNAVAILABLE (it maps connection errors), not INTERNAL; a wrong command stays a ResponseError."""
    from featurestore.online.pipelined import server_error

    loading = server_error("LOADING Redis is loading the dataset in memory")
    assert isinstance(loading, redis.BusyLoadingError) and isinstance(loading, redis.ConnectionError)
    assert isinstance(server_error("NOAUTH Authentication required."), redis.AuthenticationError)
    assert isinstance(server_error("WRONGPASS invalid username-password pair"), redis.ConnectionError)
    unknown = server_error("ERR unknown command 'X'")
    assert type(unknown) is redis.ResponseError and str(unknown) == "ERR unknown command 'X'"
