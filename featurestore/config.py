"""Repo configuration: ``featurestore.yaml`` at the repo root.

The smallest valid file is one line, ``project: NAME``; everything else defaults to paths under the
repo's ``data/`` folder. Relative paths are resolved against the repo root. Unknown keys are errors
(a typo must not silently fall back to a default).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from featurestore.errors import ConfigError

CONFIG_FILE = "featurestore.yaml"
_PROJECT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Every key the file may hold, with what it means; the README lists the same.
KEYS = {
    "project": "Project name: letters, digits, underscores. Namespaces the stores.",
    "registry.path": "SQLite registry file. Default: data/registry.db",
    "offline_store.path": "Root folder of the Parquet offline store. Default: data/offline",
    "online_store.url": (
        "redis:// or rediss:// URL of the online store (AUTH and TLS options in the URL). "
        "Default: none, an embedded Valkey server is started under online_store.path"
    ),
    "online_store.cluster": "true when online_store.url points at a Redis Cluster. Default: false",
    "online_store.path": "Data folder of the embedded online server. Default: data/online",
    "alerts.log": "true: alerts are written to the 'featurestore.alerts' Python logger. Default: true",
    "alerts.webhook.url": (
        "http:// or https:// URL that receives each alert as a JSON POST (a secret: use ${VAR}; "
        "'alerts.webhook: URL' is a shorthand). Default: none, no webhook"
    ),
    "alerts.webhook.headers": "Extra HTTP headers, a mapping (secrets: use ${VAR}). Default: none",
    "alerts.webhook.timeout_seconds": "Seconds to wait for the webhook per attempt. Default: 5",
    "alerts.webhook.retries": "Retries after a connection error, a timeout, 429 or 5xx. Default: 2",
    "alerts.airflow": "true: an error alert fails the running Airflow task, without retries. Default: false",
}


@dataclass(frozen=True)
class WebhookConfig:
    """Where alerts are POSTed. The URL and header values are secrets: ``repr`` shows neither."""

    url: str = field(repr=False)
    # Header name -> value, sent with every POST (for example Authorization). Read-only.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    # Seconds to wait per attempt (connect and each read).
    timeout_seconds: float = 5.0
    # Further attempts after a connection error, a timeout, HTTP 429 or 5xx.
    retries: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    def __repr__(self) -> str:
        return (
            f"WebhookConfig(url={redact_webhook_url(self.url)!r}, headers=[{', '.join(sorted(self.headers))}], "
            f"timeout_seconds={self.timeout_seconds}, retries={self.retries})"
        )


@dataclass(frozen=True)
class AlertsConfig:
    """Which sinks receive alerts (``featurestore.alerts.alerter_from_config`` builds them)."""

    # Write alerts to the "featurestore.alerts" logger.
    log: bool = True
    # POST alerts as JSON to a URL; None: no webhook.
    webhook: WebhookConfig | None = None
    # An error alert raises AlertRaised (an AirflowFailException inside a task): the task fails.
    airflow: bool = False


@dataclass(frozen=True)
class RepoConfig:
    """Resolved configuration of one feature repo."""

    project: str
    repo_path: Path
    registry_path: Path
    offline_store_path: Path
    online_store_url: str | None = field(default=None, repr=False)  # may hold a password
    online_store_cluster: bool = False
    online_store_path: Path | None = None
    alerts: AlertsConfig = field(default_factory=AlertsConfig)

    @property
    def data_dir(self) -> Path:
        return self.repo_path / "data"


def find_repo(start: str | os.PathLike[str] | None = None) -> Path:
    """The repo root: ``start`` (default: the current directory) if it holds featurestore.yaml."""
    path = Path(start or os.getcwd()).resolve()
    if path.is_file():
        path = path.parent
    if not (path / CONFIG_FILE).is_file():
        raise ConfigError(
            f"no {CONFIG_FILE} in {path}: run the command inside a feature repo or pass --repo PATH "
            f"(a repo needs at least a {CONFIG_FILE} holding 'project: NAME')"
        )
    return path


def load_config(repo_path: str | os.PathLike[str] | None = None) -> RepoConfig:
    """Read and validate ``featurestore.yaml``."""
    import yaml

    root = find_repo(repo_path)
    file = root / CONFIG_FILE
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{file}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping of keys, such as 'project: my_project'")
    raw = _expand_env(raw, file)

    known_top = {k.split(".")[0] for k in KEYS}
    for key in raw:
        if key not in known_top:
            raise ConfigError(f"{file}: unknown key {key!r}; valid keys are {', '.join(sorted(KEYS))}")

    project = raw.get("project")
    if not isinstance(project, str) or not _PROJECT_RE.fullmatch(project):
        raise ConfigError(
            f"{file}: 'project' must be a name of letters, digits and underscores starting with a "
            f"letter, got {project!r}"
        )

    registry = _section(raw, "registry", file)
    offline = _section(raw, "offline_store", file)
    online = _section(raw, "online_store", file, shorthand="url")
    url = online.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(_REDIS_SCHEMES)):
        raise ConfigError(
            f"{file}: 'online_store.url' must start with {' or '.join(_REDIS_SCHEMES)}, got "
            f"{redact_url(url) if isinstance(url, str) else url!r}; leave it out to use the embedded server"
        )
    cluster = online.get("cluster", False)
    if not isinstance(cluster, bool):
        raise ConfigError(f"{file}: 'online_store.cluster' must be true or false, got {cluster!r}")
    if cluster and url is None:
        raise ConfigError(
            f"{file}: 'online_store.cluster: true' needs 'online_store.url' (the embedded server is standalone)"
        )
    return RepoConfig(
        project=project,
        repo_path=root,
        registry_path=_path(root, registry.get("path", "data/registry.db"), file, "registry.path"),
        offline_store_path=_path(root, offline.get("path", "data/offline"), file, "offline_store.path"),
        online_store_url=url,
        online_store_cluster=cluster,
        online_store_path=_path(root, online.get("path", "data/online"), file, "online_store.path"),
        alerts=_alerts(raw, file),
    )


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def redact_url(url: str) -> str:
    """A URL with any password replaced by ``***``, for messages (secrets never reach logs)."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


def redact_webhook_url(url: str) -> str:
    """Only the scheme and host of a webhook URL, for messages.

    A webhook URL is a secret as a whole: Slack, Teams and Discord put the token in the path, others
    in the query or the user info, so everything after the host becomes ``***``.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:  # an invalid port or IPv6 literal: show nothing of it
        return "***"
    if not parts.netloc:
        return "***" if url else ""
    user = "***@" if "@" in parts.netloc else ""
    host = f"[{host}]" if ":" in host else host
    rest = "/***" if (parts.path not in ("", "/") or parts.query or parts.fragment) else parts.path
    return f"{parts.scheme}://{user}{host}{port}{rest}"


def _section(raw: dict[str, Any], name: str, file: Path, shorthand: str = "path") -> dict[str, Any]:
    value = raw.get(name) or {}
    if isinstance(value, str):  # shorthand: "registry: some/path.db", "online_store: redis://..."
        value = {shorthand: value}
    if not isinstance(value, dict):
        raise ConfigError(f"{file}: '{name}' must be a mapping, got {type(value).__name__}")
    _check_keys(value, name, file)
    return value


def _check_keys(value: dict[str, Any], name: str, file: Path) -> None:
    """Every key of section ``name`` (dotted: "alerts.webhook") is in KEYS, or a ConfigError names it."""
    prefix = name + "."
    allowed = {k[len(prefix):].split(".")[0] for k in KEYS if k.startswith(prefix)}
    for key in value:
        if key not in allowed:
            valid = sorted(k for k in KEYS if k.startswith(prefix))
            raise ConfigError(f"{file}: unknown key '{name}.{key}'; valid keys are {', '.join(valid)}")


_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)


def _alerts(raw: dict[str, Any], file: Path) -> AlertsConfig:
    alerts = _section(raw, "alerts", file)
    flags = {}
    for key, default in (("log", True), ("airflow", False)):
        flag = alerts.get(key, default)
        if not isinstance(flag, bool):
            raise ConfigError(f"{file}: 'alerts.{key}' must be true or false, got {flag!r}")
        flags[key] = flag
    return AlertsConfig(log=flags["log"], webhook=_webhook(alerts.get("webhook"), file), airflow=flags["airflow"])


def _webhook(value: object, file: Path) -> WebhookConfig | None:
    if value is None:
        return None
    if isinstance(value, str):  # shorthand: "webhook: https://..."; an empty ${VAR} is an error, not "off"
        value = {"url": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{file}: 'alerts.webhook' must be a mapping or a URL, got {type(value).__name__}")
    _check_keys(value, "alerts.webhook", file)

    url = value.get("url")
    if url is None:
        raise ConfigError(f"{file}: 'alerts.webhook' needs 'url' (the http:// or https:// address to POST to)")
    if not is_http_url(url):
        shown = f"{redact_webhook_url(url)!r} (redacted)" if isinstance(url, str) else type(url).__name__
        raise ConfigError(f"{file}: 'alerts.webhook.url' must be an http:// or https:// URL with a host, got {shown}")

    headers = value.get("headers") or {}
    if not isinstance(headers, dict):
        raise ConfigError(
            f"{file}: 'alerts.webhook.headers' must be a mapping of header names to values, "
            f"got {type(headers).__name__}"
        )
    for name, header in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME_RE.fullmatch(name):
            raise ConfigError(f"{file}: 'alerts.webhook.headers' has an invalid header name {name!r}")
        # Values are secrets (tokens): messages name the header, never show its value.
        if not isinstance(header, str):
            raise ConfigError(
                f"{file}: 'alerts.webhook.headers.{name}' must be a string, got {type(header).__name__} "
                "(quote it in the YAML)"
            )
        if "\r" in header or "\n" in header:
            raise ConfigError(f"{file}: 'alerts.webhook.headers.{name}' must be one line (it holds a line break)")

    timeout = value.get("timeout_seconds", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise ConfigError(
            f"{file}: 'alerts.webhook.timeout_seconds' must be a number of seconds above 0 and at most 300, "
            f"got {timeout!r}"
        )
    retries = value.get("retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise ConfigError(f"{file}: 'alerts.webhook.retries' must be a whole number from 0 to 10, got {retries!r}")
    return WebhookConfig(url=url, headers=headers, timeout_seconds=float(timeout), retries=retries)


def is_http_url(url: object) -> bool:
    """True for an ``http://`` or ``https://`` URL with a host, a valid port and no spaces."""
    if not isinstance(url, str) or _URL_BAD_CHAR_RE.search(url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


_URL_BAD_CHAR_RE = re.compile(r"[\x00-\x20\x7f]")  # what http.client refuses in a URL


def _path(root: Path, value: object, file: Path, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{file}: '{key}' must be a path string, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (root / path)


def _expand_env(value: Any, file: Path) -> Any:
    """``${VAR}`` in string values is replaced from the environment, so secrets stay out of files."""
    if isinstance(value, dict):
        return {k: _expand_env(v, file) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, file) for v in value]
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{file}: environment variable {name} is not set (used as ${{{name}}})")
            return os.environ[name]

        return _ENV_RE.sub(sub, value)
    return value
