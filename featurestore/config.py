"""Repo configuration: ``featurestore.yaml`` at the repo root.

The smallest valid file is one line, ``project: NAME``; everything else defaults to paths under the
repo's ``data/`` folder. Relative paths are resolved against the repo root. Unknown keys are errors
(a typo must not silently fall back to a default).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
}


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
    )


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def redact_url(url: str) -> str:
    """A URL with any password replaced by ``***``, for messages (secrets never reach logs)."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


def _section(raw: dict[str, Any], name: str, file: Path, shorthand: str = "path") -> dict[str, Any]:
    value = raw.get(name) or {}
    if isinstance(value, str):  # shorthand: "registry: some/path.db", "online_store: redis://..."
        value = {shorthand: value}
    if not isinstance(value, dict):
        raise ConfigError(f"{file}: '{name}' must be a mapping, got {type(value).__name__}")
    allowed = {k.split(".", 1)[1] for k in KEYS if k.startswith(name + ".")}
    for key in value:
        if key not in allowed:
            raise ConfigError(
                f"{file}: unknown key '{name}.{key}'; valid keys are "
                f"{', '.join(sorted(name + '.' + a for a in allowed))}"
            )
    return value


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
