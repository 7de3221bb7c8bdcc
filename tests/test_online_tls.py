"""A ``rediss://`` online store: TLS with a certificate checked against its CA, and AUTH."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from featurestore import FeatureStore
from featurestore.errors import MaterializationError
from featurestore.online.embedded import _free_port
from tests.conftest import BASIC_DEFS, RepoFactory, events

NOW = datetime.now(UTC).replace(microsecond=0)


def _tls_server_binary(tmp: Path) -> str | None:
    """A Redis server built with TLS: ``redis-server`` on PATH, or Debian's redis-tools binary, which
    is the same program and acts as the server when called by that name."""
    found = shutil.which("redis-server")
    if found:
        return found
    check = shutil.which("redis-check-rdb")
    if check:
        link = tmp / "redis-server"
        link.symlink_to(check)
        return str(link)
    return None


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    import redis

    tmp = tmp_path_factory.mktemp("tls")
    binary = _tls_server_binary(tmp)
    if binary is None or not shutil.which("openssl"):
        if os.environ.get("CI"):
            pytest.fail("CI must have redis-tools and openssl (scripts/test.sh installs redis-tools)")
        pytest.skip("no TLS-capable redis-server (install redis-tools) or no openssl")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=tmp, check=True, capture_output=True,
    )
    port = _free_port("127.0.0.1")
    proc = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--tls-cert-file", "cert.pem",
         "--tls-key-file", "key.pem", "--tls-ca-cert-file", "cert.pem", "--tls-auth-clients", "no",
         "--requirepass", "tls-secret", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"rediss://:tls-secret@127.0.0.1:{port}/0?ssl_ca_certs={tmp / 'cert.pem'}"
        deadline = time.monotonic() + 15
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield port, tmp / "cert.pem"
    finally:
        proc.kill()
        proc.wait()


def test_materialize_and_read_over_tls(
    make_repo: RepoFactory, tls_server: tuple[int, Path], project_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca = tls_server
    rows = [(1, NOW - timedelta(hours=2), None, 1.0, "a"), (2, NOW - timedelta(hours=1), None, 2.0, "b")]
    repo = make_repo(
        {"defs.py": BASIC_DEFS.format(ttl="timedelta(days=1)")}, {"data/events.parquet": events(rows)},
        config=(f"project: {project_name}\nonline_store:\n"
                f"  url: rediss://:${{FS_TEST_TLS_PASSWORD}}@127.0.0.1:{port}/0?ssl_ca_certs={ca}\n"),
    )
    monkeypatch.setenv("FS_TEST_TLS_PASSWORD", "tls-secret")
    with FeatureStore(repo) as store:
        store.apply()
        [run] = store.materialize(NOW - timedelta(days=1), NOW)
        assert run.written == 2
        assert store.get_online_features(["stats:value"], [{"user_id": 1}, {"user_id": 2}]).to_dict()["value"] == [1.0, 2.0]
    monkeypatch.setenv("FS_TEST_TLS_PASSWORD", "wrong")
    with FeatureStore(repo) as store, pytest.raises(MaterializationError) as info:
        store.materialize(NOW - timedelta(days=1), NOW)
    assert "AuthenticationError" in str(info.value) and "wrong" not in str(info.value)


def test_plain_connection_to_a_tls_port_fails_clearly(
    make_repo: RepoFactory, tls_server: tuple[int, Path], project_name: str
) -> None:
    port, _ = tls_server
    repo = make_repo(
        {"defs.py": BASIC_DEFS.format(ttl="None")}, {"data/events.parquet": events([(1, NOW, None, 1.0, "a")])},
        config=f"project: {project_name}\nonline_store:\n  url: redis://:tls-secret@127.0.0.1:{port}/0\n",
    )
    with FeatureStore(repo) as store:
        store.apply()
        with pytest.raises(MaterializationError, match=r"cannot write to the online store, redis://:\*\*\*@127\.0\.0\.1"):
            store.materialize(NOW - timedelta(days=1), NOW + timedelta(seconds=1))


def test_the_feature_servers_reader_over_tls(
    make_repo: RepoFactory, tls_server: tuple[int, Path], project_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's pipelined reader speaks TLS and AUTH from the same URL; a wrong password is a
    connection error (the server answers UNAVAILABLE) that names authentication, not the password."""
    import asyncio

    import redis

    from featurestore.online.redis import AsyncRedisReader

    port, ca = tls_server
    repo = make_repo(
        {"defs.py": BASIC_DEFS.format(ttl="None")},
        {"data/events.parquet": events([(1, NOW - timedelta(hours=1), None, 1.5, "a")])},
        config=(f"project: {project_name}\nonline_store:\n"
                f"  url: rediss://:${{FS_TEST_TLS_PASSWORD}}@127.0.0.1:{port}/0?ssl_ca_certs={ca}\n"),
    )
    monkeypatch.setenv("FS_TEST_TLS_PASSWORD", "tls-secret")
    with FeatureStore(repo) as store:
        store.apply()
        store.materialize(NOW - timedelta(days=1), NOW)
        key = f"{project_name}:stats:{{1}}".encode()

        async def read(config: object) -> tuple[bool, list[list[bytes | None]]]:
            reader = AsyncRedisReader.from_config(config, timeout=2)  # type: ignore[arg-type]
            try:
                return await reader.ping(), await reader.read([[key], [b"missing"]])
            finally:
                await reader.close()

        up, [[value], [missing]] = asyncio.run(read(store.config))
        assert up and missing is None
        assert value is not None and value == redis.Redis.from_url(
            f"rediss://:tls-secret@127.0.0.1:{port}/0?ssl_ca_certs={ca}").get(key)
    monkeypatch.setenv("FS_TEST_TLS_PASSWORD", "wrong")
    with FeatureStore(repo) as store, pytest.raises(redis.AuthenticationError) as info:
        asyncio.run(read(store.config))
    assert isinstance(info.value, redis.ConnectionError) and "wrong" not in str(info.value)
