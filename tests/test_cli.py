"""The command line, exercised through the CLI itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from featurestore.cli import cli
from tests.conftest import RepoFactory, events, ts

DATA = {"data/events.parquet": events([(1, ts(2026, 1, 1), None, 1.0, "a"), (2, ts(2026, 1, 2), None, 2.0, "b")])}


def run(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    runner = CliRunner()
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        result = runner.invoke(cli, list(args), obj={}, catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


@pytest.fixture
def repo(make_repo: RepoFactory) -> Path:
    return make_repo(data=DATA)


def test_plan_apply_ls_describe(repo: Path) -> None:
    code, out = run("plan", "--repo", str(repo))
    assert code == 0
    assert "+ feature view stats" in out and "3 to create" in out
    code, out = run("--repo", str(repo), "apply")
    assert code == 0 and "Applied." in out
    code, out = run("apply", cwd=repo)  # the repo in the current directory
    assert code == 0 and "Nothing to apply." in out
    code, out = run("ls", "--repo", str(repo))
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["KIND", "NAME", "VERSION", "DETAIL"]
    assert any(line.startswith("feature view") and " stats " in line and " v1 " in line for line in lines)
    code, out = run("ls", "views", "--repo", str(repo))
    assert code == 0 and "entity" not in out and "stats" in out
    code, out = run("describe", "stats", "--repo", str(repo))
    info = json.loads(out)
    assert (info["kind"], info["version"], info["spec"]["source"]["path"]) == ("feature_view", 1, "data/events.parquet")
    assert [h["change"] for h in info["history"]] == ["create"]


def test_plan_json(repo: Path) -> None:
    code, out = run("plan", "--json", "--repo", str(repo))
    assert code == 0
    assert [c["name"] for c in json.loads(out)["changes"]] == ["user", "stats", "svc"]


def test_destructive_apply_needs_flag(repo: Path) -> None:
    run("apply", "--repo", str(repo))
    defs = repo / "defs.py"
    defs.write_text(defs.read_text().replace(', Field("label", String)', ""))
    code, out = run("apply", "--repo", str(repo))
    assert code == 1
    assert "refusing to apply 1 destructive change" in out and "--allow-destructive" in out
    code, out = run("apply", "--allow-destructive", "--repo", str(repo))
    assert code == 0 and "Applied." in out


def test_materialize_runs_and_training_set(repo: Path, tmp_path: Path) -> None:
    run("apply", "--repo", str(repo))
    code, out = run("materialize", "2026-01-01", "2026-02-01", "--offline", "--repo", str(repo))
    assert code == 0, out
    assert "Materialized 1 view(s)" in out
    code, out = run("runs", "--repo", str(repo))
    assert code == 0 and "committed" in out and "stats" in out
    entity_file = tmp_path / "entities.parquet"
    pl.DataFrame({"user_id": [2, 1], "event_timestamp": [ts(2026, 1, 5), ts(2026, 1, 5)]}).write_parquet(entity_file)
    output = tmp_path / "train.parquet"
    code, out = run("training-set", str(entity_file), "-f", "stats:value", "-o", str(output), "--repo", str(repo))
    assert code == 0, out
    assert pl.read_parquet(output).get_column("value").to_list() == [2.0, 1.0]
    code, out = run("training-set", str(entity_file), "--service", "svc", "--repo", str(repo))
    assert code == 0 and "shape: (2, 4)" in out


def test_cli_errors(repo: Path, tmp_path: Path) -> None:
    code, out = run("plan", "--repo", str(tmp_path))
    assert code == 1 and "no featurestore.yaml in" in out and "--repo PATH" in out
    code, out = run("materialize", "2026-01-01", "2026-02-01", "--repo", str(repo))
    assert code == 1 and "no feature views applied yet" in out
    code, out = run("materialize", "2026-02-01", "2026-01-01", "--repo", str(repo))
    assert code == 1 and "must be after start" in out
    code, out = run("materialize", "soon", "2026-02-01", "--offline", "--repo", str(repo))
    assert code == 2 and "cannot read 'soon' as a timestamp" in out
    code, out = run("materialize", "2026-01-01", "2026-02-01", "--offline", "--repo", str(repo))
    assert code == 1 and "no feature views applied yet" in out
    run("apply", "--repo", str(repo))
    code, out = run("describe", "nope", "--repo", str(repo))
    assert code == 1 and "no applied object named 'nope'" in out
    code, out = run("training-set", str(repo / "data" / "events.parquet"), "--repo", str(repo))
    assert code == 2 and "either --features" in out
    (repo / "broken.py").write_text("from featurestore import Entity\nx = Entity('bad-name')\n")
    code, out = run("plan", "--repo", str(repo))
    assert code == 1 and "broken.py:2" in out and "'bad-name' is not a valid entity name" in out


def test_console_script_end_to_end(repo: Path) -> None:
    exe = Path(sys.executable).parent / "featurestore"
    assert exe.exists(), "the package must be installed (pip install -e .) for its console script"
    done = subprocess.run([str(exe), "--repo", str(repo), "apply"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "Applied." in done.stdout
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "0.1.0" in done.stdout
