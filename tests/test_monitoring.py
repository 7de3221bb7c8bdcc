"""Monitoring end to end: statistics recorded by every run and saved training set, and drift.

``monitor`` compares a view's current statistics (its last run, or a window) with a reference (a
saved training set, or a baseline window), writes the HTML report and sends a drift alert, here to
a real local HTTP server configured as the webhook. Data is drawn with fixed seeds: 600 rows per
month, ``amount`` normal(100, 10) in January and February (a resample) and normal(115, 10) in March
(a mean shift of 1.5 standard deviations), ``channel`` the same mix every month.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import cli
from featurestore.errors import UnknownObjectError
from featurestore.monitoring import MonitoringError
from featurestore.monitoring.monitor import monitor
from tests.conftest import online_config, write_repo
from tests.hook_server import HookServer, running

JAN, FEB, MAR, APR = (datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3, 4))
N = 600
SCHEMA = {"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "amount": pl.Float64,
          "channel": pl.String}

DEFS = """
from featurestore import Entity, Expect, FeatureService, FeatureView, Field, FileSource, Float64, String
from featurestore.monitoring import Threshold

user = Entity("user", join_keys=["user_id"])
txn = FeatureView(
    "txn", entities=[user], source=FileSource("data/txn.parquet"),
    schema=[Field("amount", Float64), Field("channel", String)],
    drift_thresholds={thresholds},{extra}
)
svc = FeatureService("svc", features=[txn])
"""


def month(seed: int, start: datetime, mean: float, first_user: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "user_id": np.arange(first_user, first_user + N),
        "event_timestamp": [start + timedelta(minutes=i) for i in range(N)],
        "amount": rng.normal(mean, 10.0, N),
        "channel": rng.choice(["web", "app", "store"], N, p=[0.5, 0.3, 0.2]),
    }, schema=SCHEMA)


# January (baseline), February (the same distribution, resampled), March (amount shifted by +15).
MONTHS = pl.concat([month(1, JAN, 100.0, 0), month(2, FEB, 100.0, N), month(3, MAR, 115.0, 2 * N)])


def cli_run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), obj={}, catch_exceptions=False)
    return result.exit_code, result.output


def entity_df(users: list[int], at: datetime) -> pl.DataFrame:
    return pl.DataFrame({"user_id": users, "event_timestamp": [at] * len(users)},
                        schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")})


# -- a webhook receiver on loopback -----------------------------------------------------------------


@pytest.fixture
def hook() -> Iterator[HookServer]:
    with running(HookServer()) as server:
        yield server


def make_store(root: Path, data: pl.DataFrame, *, config: str = "project: mon\n", thresholds: str = "{}",
               extra: str = "") -> FeatureStore:
    write_repo(root, {"defs.py": DEFS.format(thresholds=thresholds, extra=extra)}, {"data/txn.parquet": data},
               config=config)
    store = FeatureStore(root)
    store.apply()
    return store


@pytest.fixture
def store(tmp_path: Path, hook: HookServer) -> FeatureStore:
    return make_store(tmp_path / "repo", MONTHS, config=f"project: mon\nalerts: {{log: false, webhook: {hook.url}}}\n")


# -- statistics of runs and saved training sets ----------------------------------------------------------

T = datetime(2026, 1, 1, tzinfo=UTC)
# User 1 has an older and a newer row: the offline snapshot keeps both, the online store the newer.
SMALL = pl.DataFrame([
    (1, T, 1.0, "web"), (1, T + timedelta(hours=1), 3.0, "app"), (2, T, 2.0, "web"), (3, T, None, None),
    (4, T, 6.0, "web"),
], schema=SCHEMA, orient="row")


def stats(store: FeatureStore, subject: str, run_id: str | None = None) -> dict[str, Any]:
    found = store.registry.statistics(store.project, subject, run_id)
    assert found is not None and found["run_id"] == run_id
    return found["columns"]


def summary(columns: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """Per column: count, nulls, null fraction, mean, min, max (numbers) or top values (categories)."""
    out: dict[str, tuple[Any, ...]] = {}
    for name, c in columns.items():
        if c["kind"] == "numeric":
            out[name] = (c["count"], c["nulls"], c["null_fraction"], c["mean"], c["min"], c["max"])
        else:
            out[name] = (c["count"], c["nulls"], c["null_fraction"], c["distinct"], c["top"], c["other"])
    return out


def test_offline_run_statistics(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo", SMALL)
    [run] = store.materialize_offline(T - timedelta(days=1), T + timedelta(days=1))
    assert summary(stats(store, "txn", run.run_id)) == {
        "amount": (5, 1, 0.2, 3.0, 1.0, 6.0),
        "channel": (5, 1, 0.2, 2, [["web", 3], ["app", 1]], 0),
    }
    amount = stats(store, "txn", run.run_id)["amount"]
    assert (amount["dtype"], amount["distinct"], amount["quantiles"]["p50"]) == ("Float64", 4, 2.5)
    # A second run, of a narrower window, is the newest statistics of the view.
    [later] = store.materialize_offline(T + timedelta(minutes=30), T + timedelta(days=1))
    assert summary(stats(store, "txn", later.run_id))["amount"] == (1, 0, 0.0, 3.0, 3.0, 3.0)
    newest = store.registry.statistics(store.project, "txn")
    assert newest is not None and newest["run_id"] == later.run_id
    assert summary(stats(store, "txn", run.run_id))["amount"][0] == 5  # the first run's are kept


def test_online_run_statistics(tmp_path: Path, redis_server: Any, project_name: str) -> None:
    with make_store(tmp_path / "repo", SMALL, config=online_config(redis_server, project_name)) as store:
        [run] = store.materialize(T - timedelta(days=1), T + timedelta(days=1))
        assert (run.rows, run.written) == (4, 4)
        assert summary(stats(store, "txn", run.run_id)) == {  # one row per user: user 1's newer one
            "amount": (4, 1, 0.25, pytest.approx(11 / 3), 2.0, 6.0),
            "channel": (4, 1, 0.25, 2, [["web", 2], ["app", 1]], 0),
        }


def test_online_run_statistics_describe_the_rows_written(
    tmp_path: Path, redis_server: Any, project_name: str,
) -> None:
    """Under quarantine, the run's statistics are those of the rows the online store now holds."""
    extra = '\n    expectations=[Expect.between("amount", 0, 5)], on_failure="quarantine",'
    root = tmp_path / "repo"
    with make_store(root, SMALL, config=online_config(redis_server, project_name), extra=extra) as store:
        [run] = store.materialize(T - timedelta(days=1), T + timedelta(days=1))
        assert run.written == 3  # user 4 (6.0) was quarantined
        got = store.get_online_features(["txn:amount"], [{"user_id": u} for u in (1, 2, 3, 4)]).to_dict()
        assert got["amount"] == [3.0, 2.0, None, None]
        assert summary(stats(store, "txn", run.run_id))["amount"] == (3, 1, pytest.approx(1 / 3), 2.5, 2.0, 3.0)


def test_training_set_statistics(tmp_path: Path) -> None:
    store = make_store(tmp_path / "repo", SMALL)
    saved = store.save_training_set("ts", entity_df([1, 2, 3, 4, 9], T + timedelta(days=1)), "svc")
    assert saved.height == 5
    assert summary(stats(store, "training_set:ts")) == {
        "amount": (5, 2, 0.4, pytest.approx(11 / 3), 2.0, 6.0),  # user 9 has no row
        "channel": (5, 2, 0.4, 2, [["web", 2], ["app", 1]], 0),
    }
    store.save_training_set("early", entity_df([1, 2], T + timedelta(minutes=30)), "svc")
    assert summary(stats(store, "training_set:early"))["amount"] == (2, 0, 0.0, 1.5, 1.0, 2.0)
    assert store.registry.statistics(store.project, "txn") is None  # a training set is not a run


# -- drift: baseline window against current window ---------------------------------------------------


def test_a_resample_does_not_drift(store: FeatureStore, hook: HookServer, tmp_path: Path) -> None:
    html = tmp_path / "resample.html"
    result = monitor(store, "txn", baseline=(JAN, FEB), current=(FEB, MAR), html_path=html)
    assert result.drifted == [] and result.report.warned == []
    amount, channel = result.report["amount"], result.report["channel"]
    assert (amount.status, amount.reference_values, amount.current_values) == ("ok", N, N)
    assert amount.value("psi") < 0.1 and amount.value("ks") < 0.1
    assert amount.value("null_fraction") == 0.0
    assert (channel.status, channel.kind) == ("ok", "categorical")
    assert channel.value("js") < 0.05
    assert result.html_path == html and html.read_text().count("<svg") == 2
    assert hook.received == []  # no drift, no alert


def test_a_mean_shift_drifts_and_alerts(store: FeatureStore, hook: HookServer) -> None:
    result = monitor(store, "txn", baseline=(JAN, FEB), current=(MAR, APR))
    assert result.drifted == ["amount"]
    amount = result.report["amount"]
    assert (amount.status, amount.tripped) == ("drift", ("psi", "ks"))
    assert amount.value("psi") > 1.0  # far above the 0.2 threshold
    assert 0.45 < amount.value("ks") < 0.65  # a 1.5 sd shift: about 0.55
    assert [m.level for m in amount.metrics] == ["ok", "drift", "drift"]  # missing change, PSI, KS
    assert result.report["channel"].status == "ok"
    assert result.reference_label == "baseline [2026-01-01 00:00:00+00:00, 2026-02-01 00:00:00+00:00)"
    assert result.current_label == "window [2026-03-01 00:00:00+00:00, 2026-04-01 00:00:00+00:00)"
    assert result.summary().splitlines()[0] == (
        f"Drift of feature view 'txn': {result.current_label} against {result.reference_label}; "
        "1 of 2 feature(s) drifted")
    assert result.summary().splitlines()[-1] == f"Report: {result.html_path}"

    # The report: in the repo's data/reports by default, one plot per feature.
    assert result.html_path.parent == store.repo_path / "data" / "reports"
    assert result.html_path.name.startswith("drift-txn-") and result.html_path.suffix == ".html"
    page = result.html_path.read_text()
    assert page.count("<svg") == 2
    assert "<title>Drift of txn</title>" in page
    assert 'aria-label="distribution of amount: reference and current"' in page
    assert 'aria-label="value shares of channel: reference and current"' in page

    # The alert, as the webhook received it.
    [alert] = hook.alerts()
    assert (alert["kind"], alert["severity"], alert["project"], alert["subject"], alert["run_id"]) == (
        "drift", "warning", "mon", "feature view 'txn'", None)
    assert alert["report"] == str(result.html_path)
    assert alert["message"].startswith(
        f"1 feature(s) of txn drifted ({result.current_label} against {result.reference_label}); worst: amount")
    assert alert["details"]["drifted"] == ["amount"] and alert["details"]["warned"] == []
    features = {f["name"]: f for f in alert["details"]["features"]}
    assert (features["amount"]["status"], features["amount"]["tripped"]) == ("drift", ["psi", "ks"])
    assert features["amount"]["metrics"]["ks"]["value"] == pytest.approx(amount.value("ks"))
    assert features["channel"]["status"] == "ok"


def test_drift_alert_message_names_the_tripped_metrics(store: FeatureStore, hook: HookServer) -> None:
    monitor(store, "txn", baseline=(JAN, FEB), current=(MAR, APR))
    [alert] = hook.alerts()
    assert alert["message"].endswith("; worst: amount (psi, ks)")


# -- drift against a saved training set ---------------------------------------------------------------------


def test_monitor_against_a_saved_training_set(store: FeatureStore, hook: HookServer) -> None:
    # Trained on January: every January user at the start of February.
    store.save_training_set("jan", entity_df(list(range(N)), FEB), "svc")
    with pytest.raises(MonitoringError, match="feature view 'txn' has no recorded run statistics yet"):
        monitor(store, "txn", training_set="jan")

    [feb] = store.materialize_offline(FEB, MAR)  # current: the view's last run
    same = monitor(store, "txn", training_set="jan")
    assert same.reference_label == f"training set 'jan' ({N:,} rows)"
    assert same.current_label.startswith(f"run {feb.run_id} (")
    assert same.drifted == []
    assert same.report["amount"].reference_values == N and same.report["amount"].current_values == N

    [mar] = store.materialize_offline(MAR, APR)
    shifted = monitor(store, "txn", training_set="jan")
    assert shifted.current_label.startswith(f"run {mar.run_id} (")
    assert shifted.drifted == ["amount"] and shifted.report["amount"].tripped == ("psi", "ks")
    assert monitor(store, "txn", training_set="jan", current=(FEB, MAR)).drifted == []  # a window instead

    # Sets saved with full feature names compare too.
    store.save_training_set("jan_full", entity_df(list(range(N)), FEB), "svc", full_feature_names=True)
    assert monitor(store, "txn", training_set="jan_full").drifted == ["amount"]
    assert [a["kind"] for a in hook.alerts()] == ["drift", "drift"]


# -- featurestore monitor ----------------------------------------------------------------------------------


def test_cli_monitor_fail_on_drift(store: FeatureStore, tmp_path: Path, hook: HookServer) -> None:
    repo = str(store.repo_path)
    html = tmp_path / "cli.html"
    code, out = cli_run("monitor", "txn", "--repo", repo, "--baseline", "2026-01-01", "2026-02-01",
                        "--current", "2026-03-01", "2026-04-01", "--fail-on-drift", "--html", str(html))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == ("Drift of feature view 'txn': window [2026-03-01 00:00:00+00:00, 2026-04-01 00:00:00+00:00) "
                        "against baseline [2026-01-01 00:00:00+00:00, 2026-02-01 00:00:00+00:00); 1 of 2 feature(s) "
                        "drifted")
    assert lines[1].split() == ["feature", "kind", "status", "PSI", "KS", "JS", "chi2", "p", "missing", "tripped"]
    assert lines[3].split()[:3] == ["amount", "numeric", "DRIFT"] and lines[3].endswith("psi, ks")
    assert lines[4].split()[:3] == ["channel", "categorical", "ok"]
    assert "2 features: 1 drifted, 0 warning, 1 ok, 0 skipped" in lines
    assert lines[-1] == f"Report: {html}"
    assert html.read_text().count("<svg") == 2
    assert [a["report"] for a in hook.alerts()] == [str(html)]

    code, out = cli_run("monitor", "txn", "--repo", repo, "--baseline", "2026-01-01", "2026-02-01",
                        "--current", "2026-02-01", "2026-03-01", "--fail-on-drift", "--html", str(html))
    assert code == 0 and "0 of 2 feature(s) drifted" in out
    code, out = cli_run("monitor", "txn", "--repo", repo, "--baseline", "2026-01-01", "2026-02-01",
                        "--current", "2026-03-01", "2026-04-01", "--html", str(html))
    assert code == 0 and "1 of 2 feature(s) drifted" in out  # drift without --fail-on-drift: reported only

    store.save_training_set("jan", entity_df(list(range(N)), FEB), "svc")
    code, out = cli_run("monitor", "txn", "--repo", repo, "--training-set", "jan", "--current", "2026-03-01",
                        "2026-04-01", "--fail-on-drift", "--html", str(html))
    assert code == 1 and "against training set 'jan' (600 rows)" in out


def test_cli_monitor_errors(store: FeatureStore) -> None:
    repo = str(store.repo_path)
    code, out = cli_run("monitor", "txn", "--repo", repo)
    assert code == 2 and "pass a reference: --training-set NAME or --baseline START END" in out
    code, out = cli_run("monitor", "txn", "--repo", repo, "--training-set", "jan", "--baseline", "2026-01-01",
                        "2026-02-01")
    assert code == 2 and "pass a reference" in out
    code, out = cli_run("monitor", "txn", "--repo", repo, "--training-set", "nope")
    assert (code, out) == (1, "Error: unknown training set 'nope'; saved: none\n")
    code, out = cli_run("monitor", "txn", "--repo", repo, "--baseline", "2026-01-01", "2026-02-01")
    assert (code, out) == (1, "Error: feature view 'txn' has no recorded run statistics yet: materialize it or "
                              "pass a current window\n")


# -- thresholds declared on the view ------------------------------------------------------------------------


def test_drift_thresholds_on_the_view_change_the_outcome(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    store = make_store(root, MONTHS)
    assert monitor(store, "txn", baseline=(JAN, FEB), current=(MAR, APR)).drifted == ["amount"]
    assert monitor(store, "txn", baseline=(JAN, FEB), current=(FEB, MAR)).drifted == []

    # Lenient on amount: the shift is tolerated.
    make_store(root, MONTHS, thresholds='{"amount": Threshold(psi=5.0, psi_warn=None, ks=0.9)}')
    lenient = monitor(store, "txn", baseline=(JAN, FEB), current=(MAR, APR))
    assert lenient.drifted == [] and lenient.report["amount"].status == "ok"
    assert [(m.name, m.threshold, m.level) for m in lenient.report["amount"].metrics] == [
        ("null_fraction", 0.05, "ok"), ("psi", 5.0, "ok"), ("ks", 0.9, "ok")]

    # Strict on amount: even a resample drifts; channel keeps the defaults.
    make_store(root, MONTHS, thresholds='{"amount": Threshold(psi=0.001, psi_warn=None, ks=0.01)}')
    strict = monitor(store, "txn", baseline=(JAN, FEB), current=(FEB, MAR))
    assert strict.drifted == ["amount"] and strict.report["amount"].tripped == ("psi", "ks")
    assert strict.report["channel"].status == "ok"

    # Only the checks left on decide: without PSI and KS, amount cannot drift on its values.
    make_store(root, MONTHS, thresholds='{"amount": Threshold(psi=None, psi_warn=None, ks=None)}')
    off = monitor(store, "txn", baseline=(JAN, FEB), current=(MAR, APR))
    assert off.drifted == [] and off.report["amount"].status == "ok"
    assert {m.name: m.level for m in off.report["amount"].metrics} == {
        "null_fraction": "ok", "psi": "info", "ks": "info"}


def test_drift_thresholds_are_checked_when_defined(tmp_path: Path) -> None:
    from featurestore.errors import DefinitionError
    from featurestore.repo import load_repo

    for i, (thresholds, message) in enumerate([
        ('{"amount": Threshold(ks=2)}', "Threshold.ks is a fraction between 0 and 1, got 2"),
        ('{"nope": Threshold()}', "drift_thresholds maps features to Threshold(...); 'nope': "),
        ('{"amount": 0.2}', "drift_thresholds maps features to Threshold(...); 'amount': 0.2 "),
    ]):
        root = write_repo(tmp_path / str(i), {"defs.py": DEFS.format(thresholds=thresholds, extra="")},
                          {"data/txn.parquet": MONTHS.head(3)})
        with pytest.raises((DefinitionError, MonitoringError), match=re.escape(message)):
            load_repo(root)


# -- errors -----------------------------------------------------------------------------------------------


def test_monitor_errors(store: FeatureStore) -> None:
    for kwargs in ({}, {"training_set": "jan", "baseline": (JAN, FEB)}):
        with pytest.raises(MonitoringError) as exc:
            monitor(store, "txn", **kwargs)
        assert str(exc.value) == "pass a reference: a saved training set or a baseline window (not both)"
    with pytest.raises(UnknownObjectError) as unknown:
        monitor(store, "txn", training_set="nope")
    assert str(unknown.value) == "unknown training set 'nope'; saved: none"
    with pytest.raises(MonitoringError) as exc:
        monitor(store, "txn", baseline=(JAN, FEB))
    assert str(exc.value) == ("feature view 'txn' has no recorded run statistics yet: materialize it or pass a "
                              "current window")
    with pytest.raises(MonitoringError) as exc:
        monitor(store, "txn", baseline=(JAN, FEB), current=(APR, APR + timedelta(days=30)))
    assert str(exc.value) == ("feature view 'txn' has no rows in [2026-04-01 00:00:00+00:00, "
                              "2026-05-01 00:00:00+00:00)")
    with pytest.raises(UnknownObjectError, match="unknown feature view 'nope'"):
        monitor(store, "nope", baseline=(JAN, FEB))
    # A training set recorded without statistics (saved by an older version).
    store.registry.save_dataset(store.project, "old", {"name": "old", "feature_service": "svc", "rows": 3})
    with pytest.raises(MonitoringError) as exc:
        monitor(store, "txn", training_set="old", current=(FEB, MAR))
    assert str(exc.value) == "training set 'old' has no recorded statistics; save it again"
