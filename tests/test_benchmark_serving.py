"""Smoke tests of ``benchmarks/serving.py``: its bare gRPC floor servers, and the whole benchmark at
the smallest scale with short runs. They keep the benchmark working; they assert nothing about
timings (those are the benchmark's to print)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from featurestore.online.embedded import _alive

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_bare_servers_share_one_port_answer_every_method_empty_and_stop(tmp_path: Path) -> None:
    import serving

    bare = serving.BareServers(2, tmp_path)
    pids = [p.pid for p in bare.procs]
    try:
        assert len({p.port for p in bare.procs}) == 1
        assert bare.target.startswith("127.0.0.1:")
        with grpc.insecure_channel(bare.target) as channel:
            for method in ("/grpc.health.v1.Health/Check", "/any.Service/Anything"):
                call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
                assert call(b"\x08\x01", timeout=10) == b""
        cpu = bare.cpu_seconds()
        assert cpu is not None and cpu > 0
    finally:
        bare.stop()
    assert [p.proc.returncode for p in bare.procs] == [0, 0]  # SIGTERM: a clean stop, not a kill
    assert not [pid for pid in pids if _alive(pid)]


def test_a_server_that_does_not_start_is_named_with_the_end_of_its_log(tmp_path: Path) -> None:
    import serving

    crash = [sys.executable, "-c", "import sys; print('address already in use', file=sys.stderr); sys.exit(3)"]
    with pytest.raises(RuntimeError, match="the bare gRPC server did not start: address already in use"):
        serving.ServingProcess(crash, tmp_path / "bare.log", "the bare gRPC server")


@pytest.mark.slow
def test_serving_benchmark_xs_smoke(tmp_path: Path) -> None:
    out = tmp_path / "serving.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "serving.py"), "--scale", "XS", "--repeat", "1", "--duration", "1",
         "--skip-soak", "--skip-outage", "--skip-native", "--workdir", str(tmp_path / "work"), "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "processes left running: none" in proc.stdout
    report = json.loads(out.read_text())
    assert report["features"] == 19 and report["value_statuses"] == {"PRESENT": 19}
    assert report["native"] is None and report["soak"] is None and report["outage"] is None
    [round_] = report["latency"]["rounds"]
    assert {"health", "mget1", "stub1"} <= set(round_)
    assert all(r["calls"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] for r in round_.values())
    runs = [r for rs in report["throughput"]["runs"].values() for r in rs]
    assert runs and all(r["errors"] == {} and r["rps"] > 0 for r in runs)
    assert report["left_running"] == []
