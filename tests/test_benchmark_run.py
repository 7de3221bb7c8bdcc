"""Smoke test of ``benchmarks/run.py``: the whole workload at a tiny scale, this project only.

It keeps the benchmark working (data, the embedded server, every child, the feature server, the
outputs); it asserts nothing about timings. ``--compare feast`` is not run here: it installs Feast
from PyPI into a venv of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from featurestore.online.embedded import _alive

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {"import", "cold_start", "apply", "training_s", "training_mb", "materialize_rate", "materialize_mb", "inproc1_p50",
           "inproc1_p99", "inproc100_p50", "inproc100_p99", "server1_p50", "server1_p99", "server100_p50",
           "server100_p99"}


@pytest.mark.slow
def test_run_xs_smoke(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--scale", "XS", "--repeat", "1", "--warmup", "0",
         "--out", str(out), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "ours / Feast" in proc.stdout  # the terminal table

    report = json.loads((out / "run_XS.json").read_text())
    assert report["scale"]["name"] == "XS"
    assert report["features"] == 19
    assert {"import", "cold_start", "apply", "training_set", "materialize", "online", "server"} <= set(report["results"])
    assert {f["key"] for f in report["figures"]} == FIGURES
    for fig in report["figures"]:
        assert set(fig["ours"]) == {"median", "min", "max"}
        assert fig["feast"] is None and fig["ratio"] is None
    results = report["results"]
    assert results["training_set"]["ours"]["rows"] == 2_000
    assert results["materialize"]["ours"]["keys"] == results["materialize"]["ours"]["rows"] > 0
    assert results["server"]["ours"]["exit_code"] == 0
    assert report["machine"]["cpu_count"] and report["load"]["load_average_start"]
    assert report["feast"] is None and report["checks"] == {}

    # Nothing it started is left running: the embedded Valkey and the feature server.
    assert report["left_running"] == []
    assert len(report["started_pids"]) >= 2
    assert not [pid for pid in report["started_pids"] if _alive(pid)]

    markdown = (out / "report_XS.md").read_text()
    assert "![ours and Feast side by side](report_XS.svg)" in markdown
    assert "| figure | ours |" in markdown
    svg = (out / "report_XS.svg").read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and "<rect" in svg


def test_training_set_differences_are_classified(tmp_path: Path) -> None:
    """The check's classes on a tiny hand-made case: an exact tie, a null, a row exactly on the ttl
    boundary, an unexplained value; floats equal within the tolerance are not differences. No
    subprocess, no server."""
    from datetime import datetime, timedelta

    import polars as pl

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import compare_checks

    t0 = datetime(2026, 1, 1)
    source = pl.DataFrame({
        "user_id": [1, 1, 2, 3, 4],
        "event_timestamp": [t0] * 5,
        "created": [t0] * 5,  # user 1: two rows tied on event and created timestamp
        "f": [10, 20, 5, 7, 9],
        "g": [1.0, 2.0, None, 3.0, 4.0],
    })
    source.write_parquet(tmp_path / "v.parquet")
    # Row 3 is exactly ttl (2 days) after user 4's only row: inside the window on both sides' docs.
    entity = pl.DataFrame({"row_id": [0, 1, 2, 3], "user_id": [1, 2, 3, 4],
                           "event_timestamp": [t0 + timedelta(days=1)] * 3 + [t0 + timedelta(days=2)]}).with_columns(
        pl.col("event_timestamp").dt.replace_time_zone("UTC"))
    entity.write_parquet(tmp_path / "entity.parquet")
    ours = entity.with_columns(f=pl.Series([20, 5, 7, 9]), g=pl.Series([2.0, None, 3.0, 4.0]))
    feast = entity.with_columns(f=pl.Series([10, 5, 8, None]), g=pl.Series([1.0, 1.5, 3.0 + 1e-12, 4.0]))
    ours.write_parquet(tmp_path / "ours.parquet")
    feast.reverse().write_parquet(tmp_path / "feast.parquet")  # another row order: sorted by row_id first
    facts = {"views": {"v": {"path": str(tmp_path / "v.parquet"), "timestamp_field": "event_timestamp",
                             "created_timestamp_column": "created", "ttl_seconds": 2 * 86_400.0, "features": ["f", "g"],
                             "join_keys": ["user_id"]}}}

    result = compare_checks.compare_training_sets(tmp_path / "ours.parquet", tmp_path / "feast.parquet",
                                                  tmp_path / "entity.parquet", facts)

    assert result["row_ids_equal"] and result["cells"] == 8
    assert {k: v["cells"] for k, v in result["by_class"].items()} == {"tie": 2, "ttl_boundary": 1, "null": 1,
                                                                        "unexplained": 1}
    assert result["by_class"]["tie"]["by_feature"] == {"f": 1, "g": 1}
    assert result["by_class"]["null"]["matches_data"] == {"ours": 1}
    assert result["by_class"]["unexplained"]["matches_data"] == {"ours": 1}
    assert not result["explained"]
    text = "\n".join(compare_checks.format_checks({"training_set": result}))
    assert "NOT ALL EXPLAINED" in text and "tie: 2 cells" in text
