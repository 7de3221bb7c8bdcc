"""Alerts: the Alert record, the log, webhook and Airflow sinks, fan-out, and building them from config.

The webhook tests POST to a real HTTP server on 127.0.0.1 (``ThreadingHTTPServer`` in a thread).
"""

from __future__ import annotations

import json
import logging
import pickle
import socket
import sys
import types
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featurestore.alerts import (
    LOGGER_NAME,
    AirflowTaskSink,
    Alert,
    AlertDeliveryError,
    Alerter,
    AlertRaised,
    LogSink,
    WebhookSink,
    alerter_from_config,
)
from featurestore.config import CONFIG_FILE, AlertsConfig, WebhookConfig, load_config
from featurestore.errors import FeatureStoreError
from tests.hook_server import HookServer, running

SECRET = "s3cret-token"  # in every webhook URL and Authorization header below; must never be logged


def drift(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "kind": "drift",
        "severity": "warning",
        "project": "fraud",
        "subject": "txn_stats",
        "message": "PSI of amount is 0.31 (limit 0.2)",
        "details": {"feature": "amount", "psi": 0.31, "limit": 0.2},
        "report": "data/reports/drift 2026-01-31.html",
        "run_id": "r-42",
        "created_at": "2026-01-31T12:00:00+00:00",
    }
    return Alert(**{**fields, **overrides})


def failed(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "kind": "validation_failed",
        "severity": "error",
        "message": "2 of 14 expectations failed on txn_stats",
        "details": {"expectation": "amount >= 0", "failed_rows": 12, "examples": [-3.5, -1.0]},
        "report": "s3://reports/fraud/txn_stats.html",
    }
    return drift(**{**fields, **overrides})


# -- a webhook receiver on loopback -----------------------------------------------------------------


class SecretHookServer(HookServer):
    @property
    def url(self) -> str:
        """A Slack-like URL with the secret in the path and the query."""
        return f"{self.base}/services/T000/B000/{SECRET}?token={SECRET}"


@pytest.fixture
def hook() -> Iterator[HookServer]:
    with running(SecretHookServer()) as server:
        yield server


@pytest.fixture
def dead_url() -> str:
    """An address where nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/services/T000/B000/{SECRET}?token={SECRET}"


@pytest.fixture
def alert_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    return caplog


class RecordingSink:
    def __init__(self, name: str, calls: list[tuple[str, str]]) -> None:
        self.name = name
        self.calls = calls

    def send(self, alert: Alert) -> None:
        self.calls.append((self.name, alert.kind))


class BrokenSink:
    def send(self, alert: Alert) -> None:
        raise RuntimeError("disk full")

    def __repr__(self) -> str:
        return "BrokenSink()"


# -- the alert itself -------------------------------------------------------------------------------


class TestAlert:
    def test_json_form(self) -> None:
        alert = drift()
        assert json.loads(alert.to_json()) == {
            "kind": "drift",
            "severity": "warning",
            "project": "fraud",
            "subject": "txn_stats",
            "message": "PSI of amount is 0.31 (limit 0.2)",
            "details": {"feature": "amount", "psi": 0.31, "limit": 0.2},
            "report": "data/reports/drift 2026-01-31.html",
            "run_id": "r-42",
            "created_at": "2026-01-31T12:00:00+00:00",
            "text": "[warning] fraud/txn_stats: PSI of amount is 0.31 (limit 0.2) (report: data/reports/drift 2026-01-31.html)",
        }

    def test_created_at_defaults_to_now_in_utc(self) -> None:
        before = datetime.now(UTC)
        created = datetime.fromisoformat(Alert(kind="skew", severity="warning", project="p", subject="svc",
                                               message="m").created_at)
        assert created.tzinfo == UTC and before <= created <= datetime.now(UTC)

    def test_created_at_is_converted_to_utc(self) -> None:
        assert drift(created_at="2026-01-31T14:00:00+02:00").created_at == "2026-01-31T12:00:00+00:00"

    def test_details_become_plain_json(self) -> None:
        alert = drift(details={
            "psi": np.float64(0.25),
            "rows": np.int64(7),
            "examples": np.array([1.5, 2.5]),
            "window": (date(2026, 1, 1), datetime(2026, 1, 31, 12)),
            "report_dir": Path("data/reports"),
            "nan_share": float("nan"),
            "codes": {"b", "a"},
            3: "int keys become strings",
        })
        assert alert.details == {
            "psi": 0.25,
            "rows": 7,
            "examples": [1.5, 2.5],
            "window": ["2026-01-01", "2026-01-31T12:00:00+00:00"],
            "report_dir": "data/reports",
            "nan_share": "nan",
            "codes": ["a", "b"],
            "3": "int keys become strings",
        }
        assert type(alert.details["psi"]) is float and type(alert.details["rows"]) is int
        assert json.loads(alert.to_json())["details"] == alert.details

    def test_details_are_copied(self) -> None:
        details: dict[str, Any] = {"feature": "amount"}
        alert = drift(details=details)
        details["feature"] = "changed"
        assert alert.details == {"feature": "amount"}

    @pytest.mark.parametrize(
        ("overrides", "error"),
        [
            ({"kind": "Drift"}, "alert kind must be a lowercase name such as 'drift', got 'Drift'"),
            ({"severity": "fatal"}, "alert severity must be 'warning' or 'error', got 'fatal'"),
            ({"subject": ""}, "alert subject must be a non-empty string, got ''"),
            ({"message": "two\nlines"}, "alert message must be one line (put specifics in details), got 'two\\nlines'"),
            ({"report": ""}, "alert report must be a non-empty string or None, got ''"),
            ({"details": {"rows": {"sample": object()}}}, "alert details.rows.sample is a object, which has no JSON form"),
            ({"details": {(1, 2): "x"}}, "alert details has a key (1, 2); keys must be strings"),
        ],
    )
    def test_invalid(self, overrides: dict[str, Any], error: str) -> None:
        with pytest.raises(ValueError) as exc:
            drift(**overrides)
        assert str(exc.value).startswith(error)


# -- the log sink -----------------------------------------------------------------------------------


class TestLogSink:
    def test_warning_is_one_structured_line(self, alert_log: pytest.LogCaptureFixture) -> None:
        LogSink().send(drift())
        [record] = alert_log.records
        assert record.name == "featurestore.alerts"
        assert record.levelno == logging.WARNING
        assert record.getMessage() == (
            'kind=drift severity=warning project=fraud subject=txn_stats message="PSI of amount is 0.31 (limit 0.2)" '
            'details.feature=amount details.psi=0.31 details.limit=0.2 report="data/reports/drift 2026-01-31.html" '
            "run_id=r-42"
        )
        assert record.alert == drift().to_dict()  # type: ignore[attr-defined]

    def test_error_level_and_values_that_need_quoting(self, alert_log: pytest.LogCaptureFixture) -> None:
        LogSink().send(failed(details={"expectation": "note = \"x\"\nnext", "examples": [-3.5, "a b"]}, run_id=None))
        [record] = alert_log.records
        assert record.levelno == logging.ERROR
        assert record.getMessage() == (
            'kind=validation_failed severity=error project=fraud subject=txn_stats '
            'message="2 of 14 expectations failed on txn_stats" details.expectation="note = \\"x\\"\\nnext" '
            'details.examples="[-3.5,\\"a b\\"]" report=s3://reports/fraud/txn_stats.html'
        )
        assert "\n" not in record.getMessage()


# -- the webhook sink -------------------------------------------------------------------------------


class TestWebhookSink:
    def test_posts_the_alert_as_json(self, hook: HookServer) -> None:
        sink = WebhookSink(hook.url, headers={"Authorization": f"Bearer {SECRET}", "X-Team": "risk"})
        alert = failed()
        sink.send(alert)
        [req] = hook.received
        assert req.method == "POST"
        assert req.path == f"/services/T000/B000/{SECRET}?token={SECRET}"
        assert req.headers["content-type"] == "application/json"
        assert req.headers["authorization"] == f"Bearer {SECRET}"
        assert req.headers["x-team"] == "risk"
        assert req.headers["user-agent"] == "featurestore-alerts"
        assert req.body == alert.to_json().encode()
        received = json.loads(req.body)
        assert received["message"] == "2 of 14 expectations failed on txn_stats"
        assert received["details"] == {"expectation": "amount >= 0", "failed_rows": 12, "examples": [-3.5, -1.0]}
        assert received["report"] == "s3://reports/fraud/txn_stats.html"
        assert (received["kind"], received["severity"], received["subject"]) == ("validation_failed", "error", "txn_stats")
        assert sink.delivery_errors == []

    def test_retries_server_errors_then_succeeds(self, hook: HookServer, alert_log: pytest.LogCaptureFixture) -> None:
        hook.statuses = [500, 503]
        sink = WebhookSink(hook.url, retries=2, backoff_seconds=0.01)
        sink.send(drift())
        assert len(hook.received) == 3
        assert len({r.body for r in hook.received}) == 1  # the same alert each time
        assert sink.delivery_errors == [] and alert_log.records == []

    def test_gives_up_after_the_retries(self, hook: HookServer, alert_log: pytest.LogCaptureFixture) -> None:
        hook.statuses = [500, 500, 500, 500]
        sink = WebhookSink(hook.url, retries=2, backoff_seconds=0.01)
        sink.send(drift())
        assert len(hook.received) == 3
        [error] = sink.delivery_errors
        assert (error.attempts, error.transient, error.reason) == (3, True, "HTTP 500 Internal Server Error")
        assert str(error) == (
            f"alert not delivered to webhook {hook.base}/*** after 3 attempts: HTTP 500 Internal Server Error; "
            "the alert was: [warning] fraud/txn_stats: PSI of amount is 0.31 (limit 0.2) "
            "(report: data/reports/drift 2026-01-31.html)"
        )
        [record] = alert_log.records
        assert record.levelno == logging.WARNING and record.getMessage() == str(error)

    def test_client_errors_are_not_retried(self, hook: HookServer) -> None:
        hook.statuses = [403]
        sink = WebhookSink(hook.url, retries=2, backoff_seconds=0.01)
        sink.send(drift())
        assert len(hook.received) == 1
        [error] = sink.delivery_errors
        assert (error.attempts, error.transient, error.reason) == (1, False, "HTTP 403 Forbidden")

    def test_rate_limit_is_retried(self, hook: HookServer) -> None:
        hook.statuses = [429]
        sink = WebhookSink(hook.url, retries=1, backoff_seconds=0.01)
        sink.send(drift())
        assert len(hook.received) == 2 and sink.delivery_errors == []

    def test_redirects_are_not_followed(self, hook: HookServer) -> None:
        hook.statuses = [307]
        sink = WebhookSink(hook.url, headers={"Authorization": f"Bearer {SECRET}"}, backoff_seconds=0.01)
        sink.send(drift())
        assert [r.path for r in hook.received] == [f"/services/T000/B000/{SECRET}?token={SECRET}"]  # not /elsewhere
        [error] = sink.delivery_errors
        assert error.reason == (
            "HTTP 307 Temporary Redirect (a redirect: put the address it points to in alerts.webhook.url)"
        )

    def test_dead_url_is_logged_not_raised(self, dead_url: str, alert_log: pytest.LogCaptureFixture) -> None:
        sink = WebhookSink(dead_url, headers={"Authorization": f"Bearer {SECRET}"}, retries=1, backoff_seconds=0.01)
        sink.send(failed())  # returns: the failure to deliver must not hide the alert itself
        [error] = sink.delivery_errors
        assert isinstance(error, AlertDeliveryError) and isinstance(error, FeatureStoreError)
        assert error.attempts == 2 and error.transient is True
        assert error.reason.startswith("ConnectionRefusedError: ")
        assert error.alert == failed()
        [record] = alert_log.records
        port = dead_url.split(":")[2].split("/")[0]
        assert record.getMessage().startswith(f"alert not delivered to webhook http://127.0.0.1:{port}/*** after 2 attempts: ")
        assert record.getMessage().endswith("the alert was: [error] fraud/txn_stats: 2 of 14 expectations failed on "
                                            "txn_stats (report: s3://reports/fraud/txn_stats.html)")
        assert SECRET not in alert_log.text and SECRET not in str(error) and SECRET not in repr(sink)

    def test_timeout(self, hook: HookServer) -> None:
        hook.delay = 0.5
        sink = WebhookSink(hook.url, timeout=0.1, retries=0)
        sink.send(drift())
        [error] = sink.delivery_errors
        assert error.transient is True and "timed out" in error.reason

    def test_repr_hides_the_url_and_header_values(self, hook: HookServer) -> None:
        sink = WebhookSink(f"https://user:{SECRET}@hooks.example.com/T000/{SECRET}?k={SECRET}",
                           headers={"Authorization": f"Bearer {SECRET}"})
        assert repr(sink) == "WebhookSink('https://***@hooks.example.com/***', headers=[Authorization, Content-Type, User-Agent])"

    @pytest.mark.parametrize("url", [f"ftp://hooks.example.com/{SECRET}", f"hooks.example.com/{SECRET}", "http://"])
    def test_invalid_url(self, url: str) -> None:
        with pytest.raises(ValueError, match="webhook URL must be an http:// or https:// URL with a host") as exc:
            WebhookSink(url)
        assert SECRET not in str(exc.value)


# -- the Airflow sink -------------------------------------------------------------------------------


@pytest.fixture
def fake_airflow(monkeypatch: pytest.MonkeyPatch) -> type[Exception]:
    """A stand-in for Airflow 3's ``airflow.sdk.exceptions`` (same class layout) in ``sys.modules``,
    as in a running task; Airflow itself is not installed in the test environment."""

    class AirflowException(Exception):
        status_code = 500

        def serialize(self) -> tuple[str, tuple[str, ...], dict[str, Any]]:
            return f"{type(self).__module__}.{type(self).__name__}", (str(self),), {}

    class AirflowFailException(AirflowException):
        """Raise when the task should be failed without retrying."""

    module = types.ModuleType("airflow.sdk.exceptions")
    module.AirflowException = AirflowException  # type: ignore[attr-defined]
    module.AirflowFailException = AirflowFailException  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airflow.sdk.exceptions", module)
    return AirflowFailException


class TestAirflowTaskSink:
    def test_error_alert_raises_with_message_and_report(self) -> None:
        alert = failed()
        with pytest.raises(AlertRaised) as exc:
            AirflowTaskSink().send(alert)
        assert str(exc.value) == "2 of 14 expectations failed on txn_stats (report: s3://reports/fraud/txn_stats.html)"
        assert exc.value.alert is alert
        assert exc.value.transient is False
        assert isinstance(exc.value, FeatureStoreError)

    def test_without_a_report(self) -> None:
        with pytest.raises(AlertRaised, match=r"^2 of 14 expectations failed on txn_stats$"):
            AirflowTaskSink().send(failed(report=None))

    def test_warning_does_not_raise(self) -> None:
        AirflowTaskSink().send(drift())

    def test_outside_airflow_it_is_a_plain_alert_raised(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("airflow.sdk.exceptions", "airflow.exceptions"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        loaded = set(sys.modules)
        with pytest.raises(AlertRaised) as exc:
            AirflowTaskSink().send(failed())
        assert type(exc.value) is AlertRaised
        assert not {m for m in sys.modules if m.split(".")[0] == "airflow"} - loaded  # the sink imports no Airflow

    def test_inside_airflow_it_is_an_airflow_fail_exception(self, fake_airflow: type[Exception]) -> None:
        with pytest.raises(fake_airflow) as exc:  # Airflow fails the task without retries
            AirflowTaskSink().send(failed())
        assert isinstance(exc.value, AlertRaised)  # and project code still catches it as ours
        assert type(exc.value).__name__ == "AirflowAlertRaised"
        assert str(exc.value) == "2 of 14 expectations failed on txn_stats (report: s3://reports/fraud/txn_stats.html)"
        assert exc.value.transient is False

    def test_the_airflow_flavour_is_made_once_and_pickles(self, fake_airflow: type[Exception]) -> None:
        errors = []
        for _ in range(2):
            with pytest.raises(AlertRaised) as exc:
                AirflowTaskSink().send(failed())
            errors.append(exc.value)
        assert type(errors[0]) is type(errors[1])
        copy = pickle.loads(pickle.dumps(errors[0]))
        assert type(copy) is type(errors[0]) and str(copy) == str(errors[0]) and copy.alert == failed()

    def test_airflow_2_module(self, monkeypatch: pytest.MonkeyPatch) -> None:
        class AirflowFailException(Exception):
            pass

        module = types.ModuleType("airflow.exceptions")
        module.AirflowFailException = AirflowFailException  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "airflow.exceptions", module)
        with pytest.raises(AirflowFailException) as exc:
            AirflowTaskSink().send(failed())
        assert isinstance(exc.value, AlertRaised)


# -- fan-out ----------------------------------------------------------------------------------------


class TestAlerter:
    def test_every_sink_gets_the_alert_in_order(self) -> None:
        calls: list[tuple[str, str]] = []
        alerter = Alerter([RecordingSink("a", calls), RecordingSink("b", calls), RecordingSink("c", calls)])
        assert alerter.send(drift()) == []
        assert calls == [("a", "drift"), ("b", "drift"), ("c", "drift")]

    def test_a_failing_sink_does_not_stop_the_others(self, alert_log: pytest.LogCaptureFixture) -> None:
        calls: list[tuple[str, str]] = []
        alerter = Alerter([BrokenSink(), RecordingSink("after", calls)])
        [error] = alerter.send(drift())
        assert calls == [("after", "drift")]
        assert (error.sink, error.reason) == ("BrokenSink()", "RuntimeError: disk full")
        assert alerter.delivery_errors == [error]
        [record] = alert_log.records
        assert record.getMessage().startswith("alert not delivered to BrokenSink(): RuntimeError: disk full; the alert was: ")

    def test_the_airflow_sink_raises_after_every_other_sink(self) -> None:
        calls: list[tuple[str, str]] = []
        alerter = Alerter([AirflowTaskSink(), RecordingSink("log", calls), RecordingSink("hook", calls)])
        with pytest.raises(AlertRaised, match="2 of 14 expectations failed"):
            alerter.send(failed())
        assert calls == [("log", "validation_failed"), ("hook", "validation_failed")]
        alerter.send(drift())  # a warning passes
        assert calls[-2:] == [("log", "drift"), ("hook", "drift")]

    def test_webhook_failures_are_reported_by_the_alerter(self, dead_url: str, hook: HookServer) -> None:
        dead = WebhookSink(dead_url, retries=0)
        alerter = Alerter([dead, WebhookSink(hook.url)])
        [first] = alerter.send(drift())
        assert len(hook.received) == 1  # the working webhook still got it
        [second] = alerter.send(failed())
        assert first.alert == drift() and second.alert == failed()
        assert alerter.delivery_errors == [first, second] == dead.delivery_errors


# -- from featurestore.yaml -------------------------------------------------------------------------


class TestFromConfig:
    def test_default_is_the_log(self) -> None:
        alerter = alerter_from_config(AlertsConfig())
        assert [type(s) for s in alerter.sinks] == [LogSink]

    def test_all_sinks_airflow_last(self) -> None:
        config = AlertsConfig(log=True, webhook=WebhookConfig(url="https://hooks.example.com/x"), airflow=True)
        assert [type(s) for s in alerter_from_config(config).sinks] == [LogSink, WebhookSink, AirflowTaskSink]

    def test_none(self) -> None:
        assert alerter_from_config(AlertsConfig(log=False)).sinks == ()

    def test_yaml_to_webhook(self, tmp_path: Path, hook: HookServer, monkeypatch: pytest.MonkeyPatch,
                             alert_log: pytest.LogCaptureFixture) -> None:
        monkeypatch.setenv("FS_TEST_HOOK_URL", hook.url)
        monkeypatch.setenv("FS_TEST_HOOK_TOKEN", SECRET)
        (tmp_path / CONFIG_FILE).write_text(
            "project: fraud\n"
            "alerts:\n"
            "  webhook:\n"
            "    url: ${FS_TEST_HOOK_URL}\n"
            '    headers: {Authorization: "Bearer ${FS_TEST_HOOK_TOKEN}"}\n'
            "    timeout_seconds: 2\n"
            "  airflow: true\n"
        )
        alerter = alerter_from_config(load_config(tmp_path))
        assert SECRET not in repr(alerter)
        with pytest.raises(AlertRaised):
            alerter.send(failed())
        [req] = hook.received
        assert req.headers["authorization"] == f"Bearer {SECRET}"
        assert json.loads(req.body)["kind"] == "validation_failed"
        [record] = alert_log.records  # the log sink
        assert record.levelno == logging.ERROR and record.getMessage().startswith("kind=validation_failed ")
