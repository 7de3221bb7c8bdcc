"""Alerts: what failed or drifted, by how much, and where the report is, sent to pluggable sinks.

A job builds an :class:`Alert` and hands it to an :class:`Alerter`, which gives it to every sink: the
log (:class:`LogSink`), a webhook (:class:`WebhookSink`, the alert as JSON in an HTTP POST) and the
running Airflow task (:class:`AirflowTaskSink`, which fails the task on an error alert). The
``alerts:`` section of ``featurestore.yaml`` chooses the sinks; :func:`alerter_from_config` builds them.

Sending an alert never hides the problem it reports: a sink that cannot deliver logs why, the other
sinks still get the alert, and the failures stay readable on ``Alerter.delivery_errors``.

    alerter = alerter_from_config(load_config())
    alerter.send(Alert(
        kind="drift", severity="warning", project="fraud", subject="txn_stats",
        message="PSI of amount is 0.31 (limit 0.2)", details={"feature": "amount", "psi": 0.31},
        report="data/reports/drift.html",
    ))
"""

from __future__ import annotations

import enum
import http.client
import json
import logging
import math
import re
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.message import Message
from pathlib import PurePath
from typing import IO, Any, Literal, Protocol, cast

from featurestore.config import AlertsConfig, RepoConfig, WebhookConfig, is_http_url, redact_webhook_url
from featurestore.errors import FeatureStoreError
from featurestore.timeutil import to_utc

__all__ = [
    "KINDS",
    "LOGGER_NAME",
    "AirflowTaskSink",
    "Alert",
    "AlertDeliveryError",
    "AlertRaised",
    "AlertSink",
    "Alerter",
    "LogSink",
    "WebhookSink",
    "alerter_from_config",
]

LOGGER_NAME = "featurestore.alerts"
logger = logging.getLogger(LOGGER_NAME)

Severity = Literal["warning", "error"]
# The kinds the project's jobs send; other lowercase names are accepted too.
KINDS = ("validation_failed", "validation_warning", "quarantined", "drift", "skew")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class Alert:
    """One thing that failed or drifted: what, by how much, and where the full report is.

    Validated at construction; ``details`` is copied into plain JSON values (NumPy and Arrow scalars,
    dates and paths are converted) so that every sink can send it as it is.

        Alert(kind="validation_failed", severity="error", project="fraud", subject="txn_stats",
              message="2 of 14 expectations failed on txn_stats",
              details={"expectation": "amount >= 0", "failed_rows": 12, "examples": [-3.5, -1.0]},
              report="s3://reports/fraud/txn_stats/2026-01-31.html", run_id="r-42")
    """

    # What happened: one of KINDS ("validation_failed", "drift", ...) or another lowercase name.
    kind: str
    # "error" fails an Airflow task (with airflow: true); "warning" is only reported.
    severity: Severity
    project: str
    # The feature view or feature service concerned.
    subject: str
    # One line a person reads: what failed and by how much.
    message: str
    # Machine-readable specifics: expectation or feature, measured value, limit, example values.
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # Where the full report is: a path or URL.
    report: str | None = None
    # The run of the job that raised the alert.
    run_id: str | None = None
    # When the alert was made, ISO 8601 UTC; any ISO time given is converted to UTC.
    created_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not _KIND_RE.fullmatch(self.kind):
            raise ValueError(f"alert kind must be a lowercase name such as 'drift', got {self.kind!r}")
        if self.severity not in ("warning", "error"):
            raise ValueError(f"alert severity must be 'warning' or 'error', got {self.severity!r}")
        for name in ("project", "subject", "message"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"alert {name} must be a non-empty string, got {value!r}")
        if "\n" in self.message or "\r" in self.message:
            raise ValueError(f"alert message must be one line (put specifics in details), got {self.message!r}")
        for name in ("report", "run_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"alert {name} must be a non-empty string or None, got {value!r}")
        if not isinstance(self.details, Mapping):
            raise ValueError(f"alert details must be a mapping, got {type(self.details).__name__}")
        object.__setattr__(self, "details", _plain(self.details, "details"))
        object.__setattr__(self, "created_at", to_utc(self.created_at).isoformat())

    @property
    def text(self) -> str:
        """The alert in one line: ``[error] fraud/txn_stats: <message> (report: <report>)``."""
        report = f" (report: {self.report})" if self.report else ""
        return f"[{self.severity}] {self.project}/{self.subject}: {self.message}{report}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form. ``text`` repeats the alert as one line: Slack and Mattermost show that field."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "project": self.project,
            "subject": self.subject,
            "message": self.message,
            "details": dict(self.details),
            "report": self.report,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "text": self.text,
        }

    def to_json(self) -> str:
        """``to_dict()`` as strict JSON (no NaN: non-finite numbers in details became strings)."""
        return json.dumps(self.to_dict(), allow_nan=False)


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain JSON values, or a ValueError naming where in details the odd value is."""
    if value is None:
        return value
    if isinstance(value, bool):  # before int; subclasses (NumPy's float64 is a float) become the plain type
        return bool(value)
    if isinstance(value, int | str):
        return int(value) if isinstance(value, int) else str(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(float(value))  # "nan", "inf", "-inf"
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise ValueError(f"alert {where} has a key {key!r}; keys must be strings")
            out[str(key)] = _plain(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        return [_plain(item, f"{where}[]") for item in sorted(value, key=repr)]
    if isinstance(value, datetime):
        return to_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return _plain(float(value), where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value, where)
    for convert in ("as_py", "tolist", "to_list"):  # Arrow scalars; NumPy scalars and arrays; Polars Series
        method = getattr(value, convert, None)
        if callable(method):
            return _plain(method(), where)
    raise ValueError(
        f"alert {where} is a {type(value).__name__}, which has no JSON form; "
        "use numbers, strings, booleans, lists and mappings"
    )


class AlertSink(Protocol):
    """Where alerts go. ``send`` delivers one alert.

    A sink that cannot deliver should log why and return (``WebhookSink`` does, and lists the failure in
    its ``delivery_errors``); whatever a sink raises, the :class:`Alerter` still gives the alert to the
    other sinks. Raising :class:`AlertRaised` is how a sink fails the job on purpose.
    """

    def send(self, alert: Alert) -> None: ...


class AlertRaised(FeatureStoreError):
    """An error alert fails the job (see :class:`AirflowTaskSink`). Terminal: a retry finds the same data.

    Inside a running Airflow task it is also an ``AirflowFailException``, so Airflow fails the task at once
    instead of retrying it, and shows this message.
    """

    transient = False

    def __init__(self, message: str, *, alert: Alert | None = None) -> None:
        super().__init__(message)
        self.alert = alert

    @staticmethod
    def from_alert(alert: Alert) -> AlertRaised:
        """The error for ``alert``: its message and where the report is; an AirflowFailException too when
        Airflow is loaded (as it is in a running task)."""
        message = alert.message + (f" (report: {alert.report})" if alert.report else "")
        return _alert_raised_class()(message, alert=alert)

    def __reduce__(self) -> tuple[Any, ...]:
        # The Airflow flavour is made at run time, so pickle rebuilds the flavour the loading process needs.
        return (_rebuild_alert_raised, (str(self), self.alert))


def _rebuild_alert_raised(message: str, alert: Alert | None) -> AlertRaised:
    return _alert_raised_class()(message, alert=alert)


_AIRFLOW_FLAVOURS: dict[type[Exception], type[AlertRaised]] = {}


def _alert_raised_class() -> type[AlertRaised]:
    """``AlertRaised``, or when Airflow is loaded a subclass that is also its ``AirflowFailException``:
    ``except AlertRaised`` and Airflow's task runner both recognise it."""
    airflow_fail = _airflow_fail_exception()
    if airflow_fail is None:
        return AlertRaised
    cls = _AIRFLOW_FLAVOURS.get(airflow_fail)
    if cls is None:
        doc = "AlertRaised inside Airflow: fails the task without retries."
        made = type("AirflowAlertRaised", (AlertRaised, airflow_fail), {"__module__": __name__, "__doc__": doc})
        cls = _AIRFLOW_FLAVOURS[airflow_fail] = cast("type[AlertRaised]", made)
    return cls


def _airflow_fail_exception() -> type[Exception] | None:
    """Airflow's ``AirflowFailException`` if Airflow is already imported, else None.

    A running task has always imported it. Airflow is never imported here: that takes seconds and
    (Airflow 2) writes ``~/airflow/airflow.cfg``, for no gain outside a task.
    """
    for module_name in ("airflow.sdk.exceptions", "airflow.exceptions"):  # Airflow 3, then Airflow 2
        module = sys.modules.get(module_name)
        if module is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Airflow 3 deprecates airflow.exceptions.AirflowFailException
            cls = getattr(module, "AirflowFailException", None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            return cls
    return None


class AlertDeliveryError(FeatureStoreError):
    """An alert could not be delivered to a sink. Logged and kept, never raised by the Alerter.

    The message names the sink (secrets redacted), why, and repeats the alert, so the original problem
    still reaches the log.
    """

    def __init__(self, *, sink: str, alert: Alert, reason: str, attempts: int = 1, transient: bool = False) -> None:
        self.sink = sink
        self.alert = alert
        self.reason = reason
        self.attempts = attempts
        self.transient = transient
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"alert not delivered to {sink}{tries}: {reason}; the alert was: {alert.text}")


class LogSink:
    """Writes each alert to the ``featurestore.alerts`` logger: ERROR or WARNING by severity, one line.

    The line is logfmt (``key=value``, quoted when needed) and the record carries the alert's dict as
    ``record.alert`` for JSON log formatters::

        kind=drift severity=warning project=fraud subject=txn_stats message="PSI of amount is 0.31"
        details.feature=amount details.psi=0.31 report=data/reports/drift.html
    """

    def __init__(self, logger_name: str = LOGGER_NAME) -> None:
        self.logger = logging.getLogger(logger_name)

    def __repr__(self) -> str:
        return f"LogSink({self.logger.name!r})"

    def send(self, alert: Alert) -> None:
        level = logging.ERROR if alert.severity == "error" else logging.WARNING
        self.logger.log(level, "%s", _format_logfmt(alert), extra={"alert": alert.to_dict()})


_BARE_RE = re.compile(r'^[^\s"=\\]+$')
_KEY_BAD_RE = re.compile(r"[^A-Za-z0-9_.\-]")


def _format_logfmt(alert: Alert) -> str:
    """The alert as one ``key=value`` line; ``details`` keys become ``details.<key>``."""
    pairs: list[tuple[str, Any]] = [
        ("kind", alert.kind),
        ("severity", alert.severity),
        ("project", alert.project),
        ("subject", alert.subject),
        ("message", alert.message),
    ]
    pairs += [(f"details.{_KEY_BAD_RE.sub('_', key)}", value) for key, value in alert.details.items()]
    pairs += [(name, getattr(alert, name)) for name in ("report", "run_id") if getattr(alert, name) is not None]
    return " ".join(f"{key}={_logfmt_value(value)}" for key, value in pairs)


def _logfmt_value(value: Any) -> str:
    if isinstance(value, str):
        return value if _BARE_RE.fullmatch(value) else json.dumps(value)
    if isinstance(value, dict | list):
        return json.dumps(json.dumps(value, separators=(",", ":")))  # a quoted JSON string
    return json.dumps(value)  # numbers, true/false, null


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx answer is a failure: following it would send the headers (tokens) to another address."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> urllib.request.Request | None:
        return None


class WebhookSink:
    """POSTs each alert as JSON (``Content-Type: application/json``) to a URL.

    Connection errors, timeouts, 408, 429 and 5xx answers are retried ``retries`` times, waiting
    ``backoff_seconds`` and then twice as long each time; other answers (4xx, 3xx: redirects are not
    followed) are final. A failed delivery is logged as a warning on ``featurestore.alerts`` and kept in
    ``delivery_errors``; ``send`` never raises. The URL and header values never appear in messages or
    ``repr``: only the URL's scheme and host do.

        WebhookSink("https://hooks.example.com/T000/B000", headers={"Authorization": "Bearer ..."})
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        backoff_seconds: float = 0.25,
    ) -> None:
        if not is_http_url(url):
            shown = redact_webhook_url(url) if isinstance(url, str) else type(url).__name__
            raise ValueError(f"webhook URL must be an http:// or https:// URL with a host, got {shown!r} (redacted)")
        if not timeout > 0:
            raise ValueError(f"webhook timeout must be above 0 seconds, got {timeout!r}")
        if retries < 0 or backoff_seconds < 0:
            raise ValueError(f"webhook retries and backoff_seconds must be 0 or more, got {retries}, {backoff_seconds}")
        self._url = url
        self._headers = {"Content-Type": "application/json", "User-Agent": "featurestore-alerts", **(headers or {})}
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.delivery_errors: list[AlertDeliveryError] = []
        self._opener = urllib.request.build_opener(_NoRedirect())

    @classmethod
    def from_config(cls, config: WebhookConfig) -> WebhookSink:
        return cls(config.url, headers=config.headers, timeout=config.timeout_seconds, retries=config.retries)

    @property
    def target(self) -> str:
        """The URL with everything after the host hidden, for messages."""
        return redact_webhook_url(self._url)

    def __repr__(self) -> str:
        return f"WebhookSink({self.target!r}, headers=[{', '.join(sorted(self._headers))}])"

    def send(self, alert: Alert) -> None:
        body = alert.to_json().encode()
        attempts = 0
        while True:
            attempts += 1
            failure = self._post(body)
            if failure is None:
                return
            reason, transient = failure
            if not transient or attempts > self.retries:
                break
            time.sleep(self.backoff_seconds * 2 ** (attempts - 1))
        error = AlertDeliveryError(
            sink=f"webhook {self.target}", alert=alert, reason=reason, attempts=attempts, transient=transient
        )
        self.delivery_errors.append(error)
        logger.warning("%s", error)

    def _post(self, body: bytes) -> tuple[str, bool] | None:
        """None when the webhook accepted the alert, else (why, worth retrying)."""
        request = urllib.request.Request(self._url, data=body, headers=self._headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
            return None
        except urllib.error.HTTPError as exc:
            exc.close()
            reason = f"HTTP {exc.code} {exc.reason}"
            if 300 <= exc.code < 400:
                reason += " (a redirect: put the address it points to in alerts.webhook.url)"
            return self._scrub(reason), exc.code >= 500 or exc.code in (408, 429)
        except urllib.error.URLError as exc:  # refused, DNS, TLS: the reason is the underlying error
            cause = exc.reason
            reason = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(cause)
            return self._scrub(reason), True
        except (OSError, http.client.HTTPException) as exc:  # timeouts, dropped connections
            return self._scrub(f"{type(exc).__name__}: {exc}"), True

    def _scrub(self, text: str) -> str:
        return text.replace(self._url, self.target)


class AirflowTaskSink:
    """Fails the job on an error alert by raising :class:`AlertRaised`; warnings pass.

    In an Airflow task the error is also an ``AirflowFailException``: the task fails at once, without
    retries, and the task log shows the alert's message and where the report is. Airflow is never
    imported by this module.
    """

    def __repr__(self) -> str:
        return "AirflowTaskSink()"

    def send(self, alert: Alert) -> None:
        if alert.severity == "error":
            raise AlertRaised.from_alert(alert)


class Alerter:
    """Gives each alert to every sink, in order.

    One sink failing does not stop the others: an exception from a sink is logged and kept in
    ``delivery_errors``. An :class:`AlertRaised` (the Airflow sink) is raised only after every sink has
    had the alert.

        alerter = Alerter([LogSink(), WebhookSink(url), AirflowTaskSink()])
        alerter.send(alert)
    """

    def __init__(self, sinks: Iterable[AlertSink] = ()) -> None:
        self.sinks: tuple[AlertSink, ...] = tuple(sinks)
        self._errors: list[AlertDeliveryError] = []

    def __repr__(self) -> str:
        return f"Alerter([{', '.join(repr(s) for s in self.sinks)}])"

    @property
    def delivery_errors(self) -> list[AlertDeliveryError]:
        """Every failed delivery so far: exceptions from sinks, and what sinks logged in their own
        ``delivery_errors`` (as WebhookSink does)."""
        errors = list(self._errors)
        for sink in self.sinks:
            errors.extend(getattr(sink, "delivery_errors", ()))
        return errors

    def send(self, alert: Alert) -> list[AlertDeliveryError]:
        """Deliver ``alert`` to every sink; returns the deliveries of this alert that failed."""
        before = {id(sink): len(getattr(sink, "delivery_errors", ())) for sink in self.sinks}
        failed: list[AlertDeliveryError] = []
        raised: AlertRaised | None = None
        for sink in self.sinks:
            try:
                sink.send(alert)
            except AlertRaised as exc:
                raised = raised or exc
            except Exception as exc:
                error = AlertDeliveryError(
                    sink=repr(sink), alert=alert, reason=f"{type(exc).__name__}: {exc}",
                    transient=getattr(exc, "transient", False),
                )
                self._errors.append(error)
                failed.append(error)
                logger.warning("%s", error, exc_info=exc)
            failed.extend(getattr(sink, "delivery_errors", [])[before[id(sink)]:])
        if raised is not None:
            raise raised
        return failed


def alerter_from_config(config: RepoConfig | AlertsConfig) -> Alerter:
    """The sinks ``featurestore.yaml`` asks for: log, then webhook, then Airflow (which may raise) last.

        alerter = alerter_from_config(load_config())
    """
    alerts = config.alerts if isinstance(config, RepoConfig) else config
    sinks: list[AlertSink] = []
    if alerts.log:
        sinks.append(LogSink())
    if alerts.webhook is not None:
        sinks.append(WebhookSink.from_config(alerts.webhook))
    if alerts.airflow:
        sinks.append(AirflowTaskSink())
    return Alerter(sinks)
