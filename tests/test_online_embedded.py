"""The embedded online server (featurestore/online/embedded.py) and the default config path.

These tests start their own Valkey servers (not the session one) in temporary folders and check
that each is stopped by the end of the test, by its pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from featurestore import FeatureStore
from featurestore.errors import OnlineStoreError
from featurestore.online import embedded
from tests.conftest import RepoFactory, events

NOW = datetime.now(UTC).replace(microsecond=0)
T1, T2, T3 = NOW - timedelta(hours=3), NOW - timedelta(hours=2), NOW - timedelta(hours=1)
DATA = {
    "data/events.parquet": events([
        (1, T1, None, 1.0, "old"),
        (1, T3, None, 1.5, "new"),
        (2, T2, None, 2.0, "two"),
        (3, NOW - timedelta(days=3), None, 3.0, "outside the window"),
    ])
}
START, END = NOW - timedelta(days=1), NOW + timedelta(minutes=1)
ENTITIES = [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}]
NO_RETRY = Retry(NoBackoff(), 0)
EXPECTED = {"user_id": [1, 2, 3], "value": [1.5, 2.0, None], "label": ["new", "two", None]}


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as stopped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def listen_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (IPv4 and IPv6), from /proc/net."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].split(":")
            if fields[3] == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                if width == 8:
                    found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(addr[i : i + 8])[::-1] for i in range(0, 32, 8))
                    found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def state(folder: Path) -> dict[str, Any]:
    return json.loads((folder / embedded.STATE_FILE).read_text())


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Server pids a test started: any still running at teardown is killed, and the test fails."""
    started: list[int] = []
    yield started
    leaked = [pid for pid in started if running(pid)]
    for pid in leaked:
        os.kill(pid, signal.SIGKILL)
    assert not leaked, f"embedded servers left running: {leaked}"


@pytest.fixture
def repo(make_repo: RepoFactory) -> Path:
    """A repo whose featurestore.yaml is only 'project: NAME': the embedded server is the default."""
    path = make_repo(data=DATA, config="project: embedded_test\n", ttl="timedelta(days=7)")
    FeatureStore(path).apply()  # creates only: opens no online store
    assert not (path / "data" / "online").exists()
    return path


def read(store: FeatureStore) -> dict[str, list[object]]:
    return store.get_online_features(["stats:value", "stats:label"], ENTITIES).to_dict()


def test_default_config_runs_a_private_embedded_server(repo: Path, pids: list[int]) -> None:
    folder = repo / "data" / "online"
    store = FeatureStore(repo)
    results = store.materialize(START, END)
    assert [(r.view, r.rows, r.written) for r in results] == [("stats", 2, 2)]

    info = state(folder)
    pid, port, password = int(info["pid"]), int(info["port"]), str(info["password"])
    pids.append(pid)
    assert running(pid)
    assert len(password) == 32
    assert stat.S_IMODE((folder / embedded.STATE_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "server.conf").stat().st_mode) == 0o600  # holds the password too
    assert f"127.0.0.1:{port}" in repr(store.online_store)
    assert password not in repr(store.online_store)

    # Loopback only, and a password is required.
    assert listen_addresses(port) == {"127.0.0.1"}
    with redis.Redis(host="127.0.0.1", port=port, password=password) as client:
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
    # (No retries: redis-py 8 retries a failed AUTH ten times with backoff by default.)
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)) as info_noauth, redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=5, retry=NO_RETRY
    ) as anonymous:
        anonymous.get(b"embedded_test:stats:{1}")
    assert isinstance(info_noauth.value, redis.AuthenticationError) or "NOAUTH" in str(info_noauth.value)
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"), redis.Redis(
        host="127.0.0.1", port=port, password="wrong", retry=NO_RETRY
    ) as bad:
        bad.ping()

    response = store.get_online_features(["stats:value", "stats:label"], ENTITIES)
    assert response.to_dict() == EXPECTED
    assert [s.value for s in response.statuses["value"]] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    assert response.event_timestamps["value"] == [T3, T2, None]

    store.close()
    assert not running(pid)
    assert refuses(port)
    assert not (folder / embedded.STATE_FILE).exists()
    assert (folder / "dump.rdb").is_file()  # saved on shutdown
    assert folder.resolve() not in embedded._SERVERS

    # A new store on the repo starts a new server that loads the saved data.
    again = FeatureStore(repo)
    try:
        assert read(again) == EXPECTED
        second_pid = int(state(folder)["pid"])
        pids.append(second_pid)
        assert second_pid != pid and running(second_pid)
    finally:
        again.close()
    assert not running(second_pid)

    # A closed store reopens the online store (and the server) when used again.
    try:
        assert read(store) == EXPECTED
        third_pid = int(state(folder)["pid"])
        pids.append(third_pid)
    finally:
        store.close()
    assert not running(third_pid)


def test_stores_of_one_repo_share_the_server(repo: Path, pids: list[int]) -> None:
    folder = repo / "data" / "online"
    first, second = FeatureStore(repo), FeatureStore(repo)
    try:
        first.materialize(START, END)
        pid = int(state(folder)["pid"])
        pids.append(pid)
        assert read(second) == EXPECTED
        assert int(state(folder)["pid"]) == pid
        first.close()
        assert running(pid)  # the second store still uses it
        assert read(second) == EXPECTED
    finally:
        first.close()
        second.close()
    assert not running(pid)
    assert not (folder / embedded.STATE_FILE).exists()


# Reads through the repo's embedded server from another process; reports the role it got from the
# (private) per-process handle table, embedded._SERVERS.
GUEST = textwrap.dedent("""
    import json, sys
    from featurestore import FeatureStore
    from featurestore.online import embedded

    store = FeatureStore(sys.argv[1])
    response = store.get_online_features(["stats:value", "stats:label"], [{"user_id": 1}, {"user_id": 2}])
    roles = [(s.owner, s.port) for s in embedded._SERVERS.values()]
    if sys.argv[2] == "close":
        store.close()
    print(json.dumps({"values": response.to_dict(), "roles": roles}))
""")


def test_guest_processes_read_and_leave_the_server_running(repo: Path, pids: list[int]) -> None:
    folder = repo / "data" / "online"
    owner = FeatureStore(repo)
    try:
        owner.materialize(START, END)
        info = state(folder)
        pid, port = int(info["pid"]), int(info["port"])
        pids.append(pid)
        # One guest closes its store, the other just exits (the embedded module's atexit hook).
        for guest_exit in ("close", "atexit"):
            done = subprocess.run([sys.executable, "-c", GUEST, str(repo), guest_exit], capture_output=True,
                                  text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stderr
            out = json.loads(done.stdout)
            assert out["values"] == {"user_id": [1, 2], "value": [1.5, 2.0], "label": ["new", "two"]}
            assert out["roles"] == [[False, port]]  # a guest of the owner's server
            # The guest's exit stopped nothing.
            assert running(pid), guest_exit
            assert state(folder)["pid"] == pid
            assert read(owner) == EXPECTED
    finally:
        owner.close()
    assert not running(pid)
    assert not (folder / embedded.STATE_FILE).exists()


def test_acquire_is_refcounted(tmp_path: Path, pids: list[int]) -> None:
    folder = tmp_path / "online"
    (tmp_path / "elsewhere").mkdir()
    first = embedded.acquire(folder)
    try:
        second = embedded.acquire(tmp_path / "elsewhere" / ".." / "online")  # the same folder, spelled differently
        assert second is first
        assert first.owner and first._users == 2
        pid, port = int(state(folder)["pid"]), first.port
        pids.append(pid)
        with redis.Redis(**first.connection_kwargs()) as client:
            client.set(b"k", b"v")
        embedded.release(second)
        assert running(pid) and first.port == port
        with redis.Redis(**first.connection_kwargs()) as client:
            assert client.get(b"k") == b"v"
    finally:
        embedded.release(first)
    assert not running(pid)
    assert refuses(port)
    assert first.port == 0 and not first.owner
    assert not (folder / embedded.STATE_FILE).exists()
    assert folder.resolve() not in embedded._SERVERS

    # After the last release, acquire starts a new server, which loaded the saved key.
    third = embedded.acquire(folder)
    try:
        assert third is not first
        new_pid = int(state(folder)["pid"])
        pids.append(new_pid)
        assert new_pid != pid
        with redis.Redis(**third.connection_kwargs()) as client:
            assert client.get(b"k") == b"v"
    finally:
        embedded.release(third)
    assert not running(new_pid)


# Starts a server from a non-main thread (so it does not die with this process: PR_SET_PDEATHSIG is
# only set from the main thread), reports it, then waits to be killed.
ORPHAN_OWNER = textwrap.dedent("""
    import json, sys, threading, time
    from pathlib import Path
    from featurestore.online import embedded

    out = {}
    def start():
        server = embedded.acquire(Path(sys.argv[1]))
        out.update(port=server.port, pid=server._process.pid, owner=server.owner)
    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    print(json.dumps(out), flush=True)
    time.sleep(120)
""")


def test_server_of_a_dead_owner_is_adopted(tmp_path: Path, pids: list[int]) -> None:
    folder = tmp_path / "online"
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN_OWNER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.kill()  # the owner dies without stopping its server (no atexit on SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    orphan = json.loads(line)
    pids.append(orphan["pid"])
    assert orphan["owner"] is True
    assert running(orphan["pid"])
    assert state(folder)["port"] == orphan["port"]

    server = embedded.acquire(folder)
    try:
        # The lock was free and the published server answers: adopt it rather than start another.
        assert server.owner
        assert server.port == orphan["port"]
        assert server._process is None  # not our child
        assert int(state(folder)["pid"]) == orphan["pid"]
        with redis.Redis(**server.connection_kwargs()) as client:
            client.set(b"adopted", b"yes")
    finally:
        embedded.release(server)
    assert not running(orphan["pid"])
    assert refuses(orphan["port"])
    assert not (folder / embedded.STATE_FILE).exists()

    # The adopted server saved its data when the adopter stopped it.
    fresh = embedded.acquire(folder)
    try:
        pids.append(int(state(folder)["pid"]))
        with redis.Redis(**fresh.connection_kwargs()) as client:
            assert client.get(b"adopted") == b"yes"
    finally:
        embedded.release(fresh)


def test_second_owner_waits_for_the_lock_holder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that finds the lock taken but no published server yet keeps waiting (here: the
    published state is stale, so it times out with a clear error rather than starting a second server)."""
    folder = tmp_path / "online"
    folder.mkdir()
    (folder / embedded.STATE_FILE).write_text(json.dumps({"port": 1, "password": "x", "pid": 1}))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(folder / embedded.LOCK_FILE)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(embedded, "_START_TIMEOUT", 0.5)
        with pytest.raises(OnlineStoreError, match="locked by another process that did not start it"):
            embedded.acquire(folder)
    finally:
        holder.kill()
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
    assert folder.resolve() not in embedded._SERVERS
    assert not (folder / "server.conf").exists()  # no server was started


def test_stale_state_file_is_probed_once(tmp_path: Path, pids: list[int]) -> None:
    """A server.json whose server is gone (its owner died with it) and whose port something else
    now answers on: acquire probes that address once, then starts a server of its own. (redis-py's
    default retries must not turn the probe into ten connection attempts with backoff.)"""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stale_port = listener.getsockname()[1]
    listener.settimeout(0.1)
    attempts: list[int] = []
    stop = threading.Event()

    def answer_and_hang_up() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            attempts.append(1)
            conn.close()

    thread = threading.Thread(target=answer_and_hang_up, daemon=True)
    thread.start()
    folder = tmp_path / "online"
    folder.mkdir()
    (folder / embedded.STATE_FILE).write_text(json.dumps({"port": stale_port, "password": "stale", "pid": 0}))
    try:
        server = embedded.acquire(folder)
        try:
            info = state(folder)
            pids.append(int(info["pid"]))
            assert server.owner
            assert server.port == info["port"] != stale_port
            assert info["password"] != "stale"
        finally:
            embedded.release(server)
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
    assert len(attempts) == 1


DYING_OWNER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import redis
    from featurestore.online import embedded

    server = embedded.acquire(Path(sys.argv[1]))
    with redis.Redis(**server.connection_kwargs()) as client:
        client.set(b"before", b"the kill")
    print(json.dumps({"pid": server._process.pid, "port": server.port}), flush=True)
    time.sleep(120)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="the server dies with its owner on Linux only")
def test_server_dies_with_a_killed_owner_and_keeps_its_data(tmp_path: Path, pids: list[int]) -> None:
    folder = tmp_path / "online"
    proc = subprocess.Popen([sys.executable, "-c", DYING_OWNER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.kill()  # SIGKILL: no atexit, no stop(); the server gets SIGTERM from the kernel
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    info = json.loads(line)
    pids.append(info["pid"])
    deadline = time.monotonic() + 30
    while running(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(info["pid"])
    assert refuses(info["port"])
    assert state(folder)["pid"] == info["pid"]  # left behind, stale

    server = embedded.acquire(folder)
    try:
        new = state(folder)
        pids.append(int(new["pid"]))
        assert server.owner and new["pid"] != info["pid"]
        with redis.Redis(**server.connection_kwargs()) as client:
            assert client.get(b"before") == b"the kill"  # saved on SIGTERM
    finally:
        embedded.release(server)
