"""A real ``featurestore serve`` subprocess on loopback, for every test that talks to a server."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

FEATURESTORE = Path(sys.executable).parent / "featurestore"
TOKEN_ENV = "FEATURESTORE_SERVER_TOKEN"


class ServerProcess:
    """One server; ready once it printed ``Serving REPO on HOST:PORT``. Stop it with ``stop()``."""

    def __init__(self, repo: Path, log_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        """``args`` follow quick test defaults (a later repeat of an option wins); ``env`` adds to the
        environment, from which a server token is removed unless ``env`` sets one."""
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        environ = {k: v for k, v in os.environ.items() if k != TOKEN_ENV} | (env or {})
        self.proc = subprocess.Popen(
            [str(FEATURESTORE), "serve", "--repo", str(repo), "--port", "0", "--registry-refresh", "0.2",
             "--drain-seconds", "1", *args],
            stdout=subprocess.PIPE, stderr=self._log, text=True, env=environ,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        try:
            first = lines.get(timeout=30)
        except queue.Empty:
            first = None
        match = re.fullmatch(r"Serving (.+) on ([0-9.]+):(\d+)", (first or "").strip())
        if match is None:
            self.stop()
            raise AssertionError(f"the server did not start: stdout {first!r}; stderr:\n{self.log()}")
        assert match[1] == str(repo)
        self.host, self.port = match[2], int(match[3])
        assert self.port > 0

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
