"""Training/serving skew: the feature server logs served vectors, ``skew_report`` replays them.

One repo, applied and materialized once per module, and three real server processes in turn, each
logging every call (``FEATURESTORE_SERVER_LOG_SAMPLE=1``) and stopped gracefully, which writes the
log: first over a consistent store (no skew at all), then after a value pushed online only (skew
of that feature only), then after a newer source row (staleness: skew of the features it feeds,
and none in the earlier windows, which the point-in-time join replays as they were). A fourth
server at rate 0 writes nothing. The writer and the comparison rules are also tested in process.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from featurestore_server.app import LOG_SAMPLE_ENV, ServerOptions, log_sample_rate

from featurestore import Client, FeatureStore
from featurestore.alerts import Alert, Alerter
from featurestore.errors import ConfigError, RetrievalError
from featurestore.online.retrieval import FieldStatus, OnlineResponse
from featurestore.skew import FORMAT_KEY, ServedLog, SkewReport, served_log_path, skew_report
from featurestore.types import Float64
from tests.conftest import online_config, write_repo
from tests.server_process import ServerProcess

NOW = datetime.now(UTC).replace(microsecond=0)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
PRESENT, NOT_FOUND, IMPUTED = FieldStatus.PRESENT, FieldStatus.NOT_FOUND, FieldStatus.IMPUTED

DEFS = """
from datetime import timedelta
import polars as pl
from featurestore import (Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64, RequestSource,
                          String, on_demand_feature_view)

user = Entity("user", join_keys=["user_id"])
txn_stats = FeatureView(
    "txn_stats", entities=[user], source=FileSource("data/txn_stats.parquet"),
    schema=[Field("txn_avg", Float64), Field("txn_count", Int64)], ttl=None,
)
profile = FeatureView(
    "profile", entities=[user], source=FileSource("data/profile.parquet"),
    schema=[Field("country", String)], ttl=timedelta(days=7),
)
txn = RequestSource("txn", schema=[Field("amount", Float64)])


@on_demand_feature_view(sources=[txn_stats[["txn_avg"]], txn], schema=[Field("amount_ratio", Float64)])
def ratio(df):
    return df.select((pl.col("amount") / pl.col("txn_avg")).alias("amount_ratio"))


svc = FeatureService("svc", features=[txn_stats[["txn_count"]], profile])
"""

TXN_SCHEMA = {"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "txn_avg": pl.Float64,
              "txn_count": pl.Int64}
PROFILE_SCHEMA = {"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "country": pl.String}
TXN_ROWS = [
    (1, NOW - 2 * DAY, 10.0, 3),
    (1, NOW - HOUR, 20.0, 5),
    (2, NOW - 3 * HOUR, 50.0, 1),
    (3, NOW - HOUR, 0.1 + 0.2, 2),
]  # user 4: none
PROFILE_ROWS = [
    (1, NOW - 2 * HOUR, "FR"),
    (2, NOW - 10 * DAY, "DE"),  # older than the 7-day ttl: OUTSIDE_MAX_AGE online, null offline
    (3, NOW - DAY, None),  # present, with a null value
    (4, NOW - HOUR, "US"),
]

REFS = ["txn_stats:txn_avg", "txn_stats:txn_count", "profile:country", "ratio:amount_ratio"]
ROWS = [{"user_id": u, "amount": a} for u, a in [(1, 30.0), (2, 25.0), (3, 10.0), (4, 40.0)]]
ROWS_2 = [{"user_id": 3, "amount": 3.0}, {"user_id": 1, "amount": 5.0}]
SVC_ROWS = [{"user_id": u} for u in (1, 2, 5)]  # user 5: unknown everywhere


@dataclass
class Window:
    """The instants around one server's calls: every logged request time is inside [since, until)."""

    since: datetime
    until: datetime


@dataclass
class Deployment:
    root: Path
    repo: Path
    store: FeatureStore
    runs: int = 0

    @property
    def served(self) -> Path:
        return served_log_path(self.store)

    def log_files(self) -> set[Path]:
        return set(self.served.glob("date=*/*.parquet")) if self.served.is_dir() else set()

    def serve(self, calls: Sequence[tuple[Any, list[dict[str, Any]], bool]], rate: str = "1") -> Window:
        """Start a server logging at ``rate``, make ``calls`` (features, rows, full names) through
        the Client, and stop it gracefully (which writes the log)."""
        self.runs += 1
        server = ServerProcess(self.repo, self.root / f"server{self.runs}.log", env={LOG_SAMPLE_ENV: rate})
        try:
            since = datetime.now(UTC)
            with Client(server.target) as client:
                for features, rows, full in calls:
                    client.get_online_features(features, rows, full_feature_names=full)
            until = datetime.now(UTC)
        finally:
            server.stop()
        assert server.proc.returncode == 0, server.log()
        return Window(since, until)


@pytest.fixture(scope="module")
def deployed(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("skew")
    project = f"t_skew_{uuid.uuid4().hex[:8]}"
    data = {"data/txn_stats.parquet": pl.DataFrame(TXN_ROWS, schema=TXN_SCHEMA, orient="row"),
            "data/profile.parquet": pl.DataFrame(PROFILE_ROWS, schema=PROFILE_SCHEMA, orient="row")}
    repo = write_repo(root / "repo", {"defs.py": DEFS}, data, config=online_config(redis_server, project))
    with FeatureStore(repo) as store:
        store.apply()
        store.materialize(NOW - 30 * DAY, NOW)
        yield Deployment(root, repo, store)


@dataclass
class Phases:
    consistent: Window
    consistent_report: SkewReport
    pushed: Window
    stale: Window
    stale_row_time: datetime


@pytest.fixture(scope="module")
def phases(deployed: Deployment) -> Phases:
    """The three logging servers, in order: the later phases change the stores on purpose."""
    consistent = deployed.serve([(REFS, ROWS, False), (REFS, ROWS_2, False), ("svc", SVC_ROWS, True)])
    consistent_report = skew_report(deployed.store, since=consistent.since, until=consistent.until)
    # A divergence online only: user 1's country pushed to the online store, not the offline one.
    deployed.store.push("profile", pl.DataFrame(
        [(1, NOW - HOUR / 2, "XX")], schema=PROFILE_SCHEMA, orient="row"), to="online")
    pushed = deployed.serve([(REFS, ROWS, False), ("svc", SVC_ROWS, True)])
    # Staleness: a source row newer than the last materialization, and older than the next calls.
    stale_row_time = datetime.now(UTC)
    newer = pl.DataFrame([*TXN_ROWS, (2, stale_row_time, 70.0, 4)], schema=TXN_SCHEMA, orient="row")
    newer.write_parquet(deployed.repo / "data/txn_stats.parquet")
    stale = deployed.serve([(["txn_stats:txn_avg", "ratio:amount_ratio"], ROWS, False)])
    assert stale.since > stale_row_time
    return Phases(consistent, consistent_report, pushed, stale, stale_row_time)


def counts(report: SkewReport) -> dict[str, tuple[int, int]]:
    """(rows compared, mismatches) per feature."""
    return {f.feature: (f.rows, f.mismatches) for f in report.features}


# -- 1. a consistent store: no skew ---------------------------------------------------------------


class TestConsistent:
    def test_no_mismatches_and_exact_rows(self, phases: Phases) -> None:
        report = phases.consistent_report
        assert (report.rows, report.feature_sets) == (4 + 2 + 3, 2)
        assert counts(report) == {
            "profile:country": (9, 0), "ratio:amount_ratio": (6, 0),
            "txn_stats:txn_avg": (6, 0), "txn_stats:txn_count": (9, 0),
        }
        assert report.worst == [] and report.over_threshold == [] and report.alerts == () and report.errors == ()
        assert "No feature over the 1.00% threshold." in report.summary()

    def test_missing_values_are_compared_and_counted(self, phases: Phases) -> None:
        report = phases.consistent_report
        country = report["profile:country"]
        # User 2 (too old) in both feature sets and user 5 (unknown): null online and offline alike.
        assert (country.outside_max_age, country.not_found, country.online_missing, country.offline_missing) == (
            2, 1, 0, 0)
        assert (report["txn_stats:txn_count"].not_found, report["txn_stats:txn_avg"].not_found) == (2, 1)
        assert report["ratio:amount_ratio"].not_found == 1  # user 4 has no average to divide by

    def test_the_replay_is_point_in_time(self, deployed: Deployment, phases: Phases) -> None:
        """After the later phases changed the stores, the first window still replays without skew:
        the pushed value never reached the offline store, the newer source row is after its calls."""
        again = skew_report(deployed.store, since=phases.consistent.since, until=phases.consistent.until)
        assert again.to_dict() == phases.consistent_report.to_dict()


# -- 2. a deliberate divergence: skew of that feature only ----------------------------------------


class TestDivergence:
    def test_value_pushed_online_only(self, deployed: Deployment, phases: Phases) -> None:
        report = skew_report(deployed.store, since=phases.pushed.since, until=phases.pushed.until)
        assert counts(report) == {
            "profile:country": (7, 2), "ratio:amount_ratio": (4, 0),
            "txn_stats:txn_avg": (4, 0), "txn_stats:txn_count": (7, 0),
        }
        country = report["profile:country"]
        assert country.rate == pytest.approx(2 / 7)
        assert (country.different, country.online_missing, country.offline_missing) == (2, 0, 0)
        assert [f.feature for f in report.worst] == [f.feature for f in report.over_threshold] == ["profile:country"]
        examples = [(e.keys, e.online, e.offline, e.status) for e in country.examples]
        assert sorted(examples, key=lambda e: len(e[0])) == [  # the service's rows have no request values
            ({"user_id": 1}, "XX", "FR", "PRESENT"), ({"user_id": 1, "amount": 30.0}, "XX", "FR", "PRESENT")]
        assert all(phases.pushed.since <= e.request_time < phases.pushed.until for e in country.examples)

    def test_alert_and_summary(self, deployed: Deployment, phases: Phases) -> None:
        sent: list[Alert] = []

        class Collect:
            def send(self, alert: Alert) -> None:
                sent.append(alert)

        report = skew_report(deployed.store, since=phases.pushed.since, until=phases.pushed.until,
                             alerter=Alerter([Collect()]))
        assert list(report.alerts) == sent and len(sent) == 1
        [alert] = sent
        assert (alert.kind, alert.severity, alert.subject) == ("skew", "warning", "feature view 'profile'")
        assert "profile:country mismatches in 28.57% of 7 logged rows" in alert.message
        [detail] = alert.details["features"]
        assert (detail["feature"], detail["mismatches"], detail["rows"]) == ("profile:country", 2, 7)
        assert {e["online"] for e in detail["examples"]} == {"XX"}
        json.loads(alert.to_json())  # plain JSON, examples included
        text = report.summary()
        assert "1 feature(s) over the 1.00% threshold: profile:country" in text
        assert "user_id=1" in text and "online 'XX' (PRESENT), offline 'FR'" in text
        line = next(line for line in text.splitlines() if line.startswith("profile:country"))
        assert line.split() == ["profile:country", "7", "2", "28.57%", "0", "0", "2", "1", "2", "0"]

    def test_threshold(self, deployed: Deployment, phases: Phases) -> None:
        report = skew_report(deployed.store, since=phases.pushed.since, until=phases.pushed.until, threshold=0.3)
        assert [f.feature for f in report.worst] == ["profile:country"]
        assert report.over_threshold == [] and report.alerts == ()

    def test_staleness_after_a_newer_source_row(self, deployed: Deployment, phases: Phases) -> None:
        report = skew_report(deployed.store, since=phases.stale.since)
        assert counts(report) == {"ratio:amount_ratio": (4, 1), "txn_stats:txn_avg": (4, 1)}
        [avg] = report["txn_stats:txn_avg"].examples
        assert (avg.keys, avg.online, avg.offline) == ({"user_id": 2, "amount": 25.0}, 50.0, 70.0)
        [ratio] = report["ratio:amount_ratio"].examples
        assert (ratio.online, ratio.offline) == (0.5, pytest.approx(25.0 / 70.0))
        # The calls before the row was written replay the value they were served.
        earlier = skew_report(deployed.store, since=phases.pushed.since, until=phases.stale_row_time)
        assert counts(earlier)["txn_stats:txn_avg"] == (4, 0)

    def test_whole_log_and_feature_filter(self, deployed: Deployment, phases: Phases) -> None:
        everything = skew_report(deployed.store, since=phases.consistent.since)
        assert everything.rows == 9 + 7 + 4 and everything.feature_sets == 3
        assert counts(everything)["profile:country"] == (16, 2)
        only = skew_report(deployed.store, since=phases.consistent.since, until=phases.stale.until,
                           features=["profile:country", "txn_avg"])
        assert counts(only) == {"profile:country": (16, 2), "txn_stats:txn_avg": (14, 1)}


# -- 3. the log itself ----------------------------------------------------------------------------


class TestLogFiles:
    def test_schema_and_values(self, deployed: Deployment, phases: Phases) -> None:
        tables = [pq.read_table(p) for p in sorted(deployed.log_files())]
        window = [t for t in tables if phases.consistent.since <= t.column("__request_time")[0].as_py()
                  < phases.consistent.until]
        by_set = {(t.column("__features")[0].as_py(), t.column("__full_feature_names")[0].as_py()): t
                  for t in window}
        assert set(by_set) == {(json.dumps(REFS), False), ('"svc"', True)}
        refs = pa.concat_tables([t for t in window if t.column("__features")[0].as_py() == json.dumps(REFS)])
        status = pa.string()
        assert refs.schema.remove_metadata() == pa.schema([
            ("__request_time", pa.timestamp("us", tz="UTC")), ("__features", pa.string()),
            ("__full_feature_names", pa.bool_()), ("user_id", pa.int64()), ("amount", pa.float64()),
            ("txn_avg", pa.float64()), ("txn_avg__status", status), ("txn_count", pa.int64()),
            ("txn_count__status", status), ("country", pa.string()), ("country__status", status),
            ("amount_ratio", pa.float64()), ("amount_ratio__status", status),
        ])
        assert refs.schema.metadata[FORMAT_KEY] == b"1"
        got = refs.select(["user_id", "amount", "txn_avg", "txn_avg__status", "country", "country__status"])
        assert got.to_pylist()[:4] == [
            {"user_id": 1, "amount": 30.0, "txn_avg": 20.0, "txn_avg__status": "PRESENT", "country": "FR",
             "country__status": "PRESENT"},
            {"user_id": 2, "amount": 25.0, "txn_avg": 50.0, "txn_avg__status": "PRESENT", "country": None,
             "country__status": "OUTSIDE_MAX_AGE"},
            {"user_id": 3, "amount": 10.0, "txn_avg": 0.1 + 0.2, "txn_avg__status": "PRESENT", "country": None,
             "country__status": "PRESENT"},
            {"user_id": 4, "amount": 40.0, "txn_avg": None, "txn_avg__status": "NOT_FOUND", "country": "US",
             "country__status": "PRESENT"},
        ]
        times = refs.column("__request_time").to_pylist()
        assert times[0] == times[3] != times[4]  # one request time per call
        service = by_set[('"svc"', True)]
        assert service.column_names == ["__request_time", "__features", "__full_feature_names", "user_id",
                                        "txn_stats__txn_count", "txn_stats__txn_count__status",
                                        "profile__country", "profile__country__status"]
        assert service.column("profile__country__status").to_pylist() == ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
        for path in deployed.log_files():
            assert path.parent.name == f"date={pq.read_table(path).column('__request_time')[0].as_py():%Y-%m-%d}"
        assert not list(deployed.served.glob("date=*/*.tmp"))

    def test_rate_zero_writes_nothing(self, deployed: Deployment, phases: Phases) -> None:
        before = deployed.log_files()
        deployed.serve([(REFS, ROWS, False), ("svc", SVC_ROWS, True)], rate="0")
        assert deployed.log_files() == before


# -- 4. in process: the writer, the comparison rules, the edges -----------------------------------


def response(users: list[int], values: list[Any], statuses: list[FieldStatus]) -> OnlineResponse:
    return OnlineResponse({"user_id": users}, {"txn_avg": values}, {"txn_avg": statuses},
                          {"txn_avg": [None] * len(users)}, {"txn_avg": Float64})


def micros(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000 + at.microsecond


class TestComparison:
    def test_tolerance_nulls_and_statuses(self, deployed: Deployment) -> None:
        at = NOW - HOUR / 2  # user 1's average is 20 then, user 2's 50, user 3's 0.1 + 0.2, user 4 has none
        log = ServedLog(deployed.served, 1.0)
        log.record_response(micros(at), ("txn_stats:txn_avg",), False, {"user_id": [1, 1, 3, 2, 4, 4]}, response(
            [1, 1, 3, 2, 4, 4], [20.0 * (1 + 1e-12), 20.0001, 0.30000000000000004, None, 7.0, 0.0],
            [PRESENT, PRESENT, PRESENT, NOT_FOUND, PRESENT, IMPUTED]))
        asyncio.run(log.close())
        assert (log.logged_rows, log.files_written) == (6, 1)
        report = skew_report(deployed.store, since=at, until=at + timedelta(microseconds=1))
        avg = report["txn_stats:txn_avg"]
        assert (avg.rows, avg.mismatches, avg.different, avg.online_missing, avg.offline_missing) == (6, 3, 1, 1, 1)
        assert (avg.not_found, avg.imputed) == (1, 1)
        assert [(e.keys["user_id"], e.online, e.offline, e.status) for e in avg.examples] == [
            (1, 20.0001, 20.0, "PRESENT"), (2, None, 50.0, "NOT_FOUND"), (4, 7.0, None, "PRESENT")]

    def test_a_feature_set_that_cannot_be_replayed(self, deployed: Deployment) -> None:
        """Logs of a view applied no more are listed as not replayed; the other sets are still compared."""
        at = NOW - HOUR / 3
        log = ServedLog(deployed.served, 1.0)
        for features in (("gone:txn_avg",), ("txn_stats:txn_avg",)):
            log.record_response(micros(at), features, False, {"user_id": [1]}, response([1], [20.0], [PRESENT]))
        asyncio.run(log.close())
        report = skew_report(deployed.store, since=at, until=at + timedelta(microseconds=1))
        assert counts(report) == {"txn_stats:txn_avg": (1, 0)}
        assert report.errors == ("features ['gone:txn_avg'] (1 row(s)): feature ref 'gone:txn_avg': unknown feature "
                                 "view 'gone'; applied views: ['profile', 'ratio', 'txn_stats']",)
        assert "Not replayed:\n  features ['gone:txn_avg']" in report.summary()

    def test_no_logs_is_a_clear_message(self, tmp_path: Path) -> None:
        repo = write_repo(tmp_path / "repo", {"defs.py": DEFS}, config="project: empty\n")
        with FeatureStore(repo) as store:
            report = skew_report(store, since="2026-01-01")
        assert report.empty and report.features == () and report.worst == []
        assert report.summary().startswith(f"No served vectors logged in {served_log_path(store)} since "
                                           "2026-01-01T00:00:00+00:00. Run the feature server with --log-sample")
        assert report.to_dict()["rows"] == 0

    def test_cli_prints_the_report_and_refuses_a_bad_window(self, tmp_path: Path) -> None:
        from click.testing import CliRunner

        from featurestore.cli import cli

        repo = write_repo(tmp_path / "repo", {"defs.py": DEFS}, config="project: cli_skew\n")
        result = CliRunner().invoke(cli, ["--repo", str(repo), "skew", "--since", "2026-01-01"], obj={})
        assert result.exit_code == 0, result.output
        assert result.output.startswith("No served vectors logged in ")
        result = CliRunner().invoke(cli, ["--repo", str(repo), "skew", "--since", "2026-01-02", "--until", "2026-01-01"],
                                    obj={})
        assert result.exit_code == 1
        assert "since 2026-01-02T00:00:00+00:00 must be before until" in result.output

    def test_bad_arguments(self, tmp_path: Path) -> None:
        repo = write_repo(tmp_path / "repo", {"defs.py": DEFS}, config="project: args\n")
        with FeatureStore(repo) as store:
            with pytest.raises(RetrievalError, match="since 2026-01-02T00:00:00\\+00:00 must be before until"):
                skew_report(store, since="2026-01-02", until="2026-01-01")
            with pytest.raises(RetrievalError, match="a rate between 0 and 1, got 5"):
                skew_report(store, threshold=5)


class TestServedLog:
    def test_sampling_draws_per_call(self, tmp_path: Path) -> None:
        draws = iter([0.1, 0.3, 0.2, 0.9])
        log = ServedLog(tmp_path, 0.25, rng=lambda: next(draws))
        assert [log.sampled() for _ in range(4)] == [True, False, True, False]
        assert ServedLog(tmp_path, 1.0, rng=lambda: 1.0).sampled()
        for rate in (0.0, -0.1, 1.5):
            with pytest.raises(ValueError, match="above 0 and at most 1"):
                ServedLog(tmp_path, rate)

    def test_bounded_buffer_drops_and_counts(self, tmp_path: Path) -> None:
        log = ServedLog(tmp_path, 1.0, flush_rows=2, max_rows=3)
        for users in ([1, 2], [3, 4], [5]):
            log.record_response(micros(NOW), ("txn_stats:txn_avg",), False, {"user_id": users},
                                response(users, [1.0] * len(users), [PRESENT] * len(users)))
        assert log.dropped_rows == 2
        asyncio.run(log.close())
        [path] = tmp_path.glob("date=*/*.parquet")
        assert pq.read_table(path).column("user_id").to_pylist() == [1, 2, 5]
        assert (log.logged_rows, log.failed_rows) == (3, 0)

    def test_background_flush(self, tmp_path: Path) -> None:
        async def run() -> list[Path]:
            log = ServedLog(tmp_path, 1.0, flush_seconds=0.05)
            log.start()
            log.record_response(micros(NOW), ("txn_stats:txn_avg",), False, {"user_id": [1]},
                                response([1], [2.0], [PRESENT]))
            for _ in range(100):
                await asyncio.sleep(0.02)
                if log.files_written:
                    break
            written = sorted(tmp_path.glob("date=*/*.parquet"))
            await log.close()
            log.record_response(micros(NOW), ("txn_stats:txn_avg",), False, {"user_id": [2]},
                                response([2], [2.0], [PRESENT]))  # after close: not logged
            return written

        written = asyncio.run(run())
        assert len(written) == 1 and sorted(tmp_path.glob("date=*/*.parquet")) == written

    def test_rate_from_option_or_environment(self) -> None:
        assert log_sample_rate(ServerOptions(), {}) == 0.0
        assert log_sample_rate(ServerOptions(), {LOG_SAMPLE_ENV: "0.25"}) == 0.25
        assert log_sample_rate(ServerOptions(log_sample=0.5), {LOG_SAMPLE_ENV: "0.25"}) == 0.5
        with pytest.raises(ConfigError, match=f"{LOG_SAMPLE_ENV} must be a number between 0 and 1, got 'lots'"):
            log_sample_rate(ServerOptions(), {LOG_SAMPLE_ENV: "lots"})
        with pytest.raises(ConfigError, match="--log-sample must be between 0 \\(off\\) and 1"):
            log_sample_rate(ServerOptions(log_sample=2.0), {})
        with pytest.raises(ConfigError, match=f"{LOG_SAMPLE_ENV} must be between"):
            log_sample_rate(ServerOptions(), {LOG_SAMPLE_ENV: "nan"})
