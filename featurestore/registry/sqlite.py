"""The registry: a SQLite file that records what was applied, and every run.

* ``objects``: the current version of every applied definition (spec, data and metadata
  fingerprints, version number), per project.
* ``object_history``: every version ever applied, with the apply that made it.
* ``applies``: the apply history (who, when, what changed).
* ``runs``: materialization runs (window, rows, outcome); a run's files become visible only once
  its row says ``committed``.
* ``lineage``: column-level lineage edges (``featurestore.lineage``), replaced as a whole per project.
* ``statistics``, ``datasets``: room for profiling and saved training sets.

Writes go through ``BEGIN IMMEDIATE`` transactions in WAL mode, so two concurrent applies are
serialised by SQLite's lock and never interleave.
"""

from __future__ import annotations

import getpass
import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from featurestore.errors import RegistryError
from featurestore.lineage import LineageEdge, LineageNode, edge_order

SCHEMA_VERSION = 2

# A view's column (node) is computed from an upstream column; see featurestore.lineage.
_LINEAGE = """
CREATE TABLE IF NOT EXISTS lineage (
    project TEXT NOT NULL,
    node_kind TEXT NOT NULL, node_owner TEXT NOT NULL, node_column TEXT NOT NULL,
    up_kind TEXT NOT NULL, up_owner TEXT NOT NULL, up_column TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (project, node_owner, node_column, up_kind, up_owner, up_column)
)"""

# Statements that bring a registry from version N to N + 1.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Version 1 had a placeholder lineage table that nothing wrote.
    1: ("DROP TABLE IF EXISTS lineage", _LINEAGE),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    applied_by TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    project TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    data_fingerprint TEXT NOT NULL,
    metadata_fingerprint TEXT NOT NULL,
    storage_fingerprint TEXT,
    spec TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    apply_id INTEGER NOT NULL REFERENCES applies(id),
    PRIMARY KEY (project, kind, name)
);
CREATE TABLE IF NOT EXISTS object_history (
    project TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    change TEXT NOT NULL,
    data_fingerprint TEXT NOT NULL,
    metadata_fingerprint TEXT NOT NULL,
    spec TEXT NOT NULL,
    apply_id INTEGER NOT NULL REFERENCES applies(id),
    PRIMARY KEY (project, kind, name, version, apply_id)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    view TEXT NOT NULL,
    kind TEXT NOT NULL,
    window_start TEXT,
    window_end TEXT,
    status TEXT NOT NULL,
    rows INTEGER,
    storage_fingerprint TEXT,
    location TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    duration_s REAL,
    message TEXT,
    commit_seq INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_view ON runs (project, view, status);
CREATE TABLE IF NOT EXISTS statistics (
    project TEXT NOT NULL, subject TEXT NOT NULL, run_id TEXT, created_at TEXT NOT NULL,
    stats TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS validations (
    project TEXT NOT NULL, subject TEXT NOT NULL, run_id TEXT, created_at TEXT NOT NULL,
    success INTEGER NOT NULL, result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS validations_by_subject ON validations (project, subject, created_at);
CREATE TABLE IF NOT EXISTS datasets (
    project TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT NOT NULL, spec TEXT NOT NULL,
    PRIMARY KEY (project, name)
);
""" + _LINEAGE


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class StoredObject:
    """One applied definition as the registry holds it."""

    kind: str
    name: str
    version: int
    data_fingerprint: str
    metadata_fingerprint: str
    storage_fingerprint: str | None
    spec: dict[str, Any]
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class Run:
    """A materialization run."""

    run_id: str
    view: str
    kind: str
    window_start: str | None
    window_end: str | None
    status: str
    rows: int | None
    storage_fingerprint: str | None
    location: str | None
    started_at: str
    finished_at: str | None
    duration_s: float | None
    message: str | None
    commit_seq: int | None


class Registry:
    """The SQLite registry of one or more projects. Cheap to create; connects per call."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._initialised = False

    # -- connection handling ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise RegistryError(f"cannot open registry {self.path}: {exc}") from None
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout = 60000")
        if not self._initialised:
            self._init(con)
        return con

    def _init(self, con: sqlite3.Connection) -> None:
        try:
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row["value"]) > SCHEMA_VERSION:
                con.execute("ROLLBACK")
                raise RegistryError(
                    f"registry {self.path} has schema version {row['value']}, newer than this "
                    f"featurestore ({SCHEMA_VERSION}): upgrade the featurestore package"
                )
            elif int(row["value"]) < SCHEMA_VERSION:
                for version in range(int(row["value"]), SCHEMA_VERSION):
                    for statement in _MIGRATIONS.get(version, ()):
                        con.execute(statement)
                con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"registry {self.path} is not a valid registry database: {exc}") from None
        self._initialised = True

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[RegistryTransaction]:
        """A write transaction: everything in it commits together or not at all."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            tx = RegistryTransaction(con)
            try:
                yield tx
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise RegistryError(f"registry {self.path}: {exc}") from None
        finally:
            con.close()

    # -- reads -----------------------------------------------------------------------------------

    def list_objects(self, project: str, kind: str | None = None) -> list[StoredObject]:
        with self.read() as con:
            return _list_objects(con, project, kind)

    def get_object(self, project: str, kind: str, name: str) -> StoredObject | None:
        with self.read() as con:
            row = con.execute(
                "SELECT * FROM objects WHERE project = ? AND kind = ? AND name = ?", (project, kind, name)
            ).fetchone()
        return _object(row) if row else None

    def history(self, project: str, limit: int = 20) -> list[dict[str, Any]]:
        with self.read() as con:
            rows = con.execute(
                "SELECT * FROM applies WHERE project = ? ORDER BY id DESC LIMIT ?", (project, limit)
            ).fetchall()
        return [
            {"id": r["id"], "applied_at": r["applied_at"], "applied_by": r["applied_by"],
             "summary": json.loads(r["summary"])}
            for r in rows
        ]

    def object_versions(self, project: str, kind: str, name: str) -> list[dict[str, Any]]:
        with self.read() as con:
            rows = con.execute(
                "SELECT h.*, a.applied_at FROM object_history h JOIN applies a ON a.id = h.apply_id "
                "WHERE h.project = ? AND h.kind = ? AND h.name = ? ORDER BY h.apply_id",
                (project, kind, name),
            ).fetchall()
        return [
            {"version": r["version"], "change": r["change"], "data_fingerprint": r["data_fingerprint"],
             "metadata_fingerprint": r["metadata_fingerprint"], "applied_at": r["applied_at"]}
            for r in rows
        ]

    def runs(self, project: str, view: str | None = None, status: str | None = None) -> list[Run]:
        sql = "SELECT * FROM runs WHERE project = ?"
        args: list[Any] = [project]
        if view is not None:
            sql += " AND view = ?"
            args.append(view)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY started_at, run_id"
        with self.read() as con:
            return [_run(r) for r in con.execute(sql, args).fetchall()]

    def dataset(self, project: str, name: str) -> dict[str, Any] | None:
        """A saved training set's record (its spec, with ``created_at``), or None."""
        with self.read() as con:
            row = con.execute("SELECT * FROM datasets WHERE project = ? AND name = ?", (project, name)).fetchone()
        return None if row is None else {**json.loads(row["spec"]), "created_at": row["created_at"]}

    def datasets(self, project: str) -> list[dict[str, Any]]:
        """Saved training sets, oldest first."""
        with self.read() as con:
            rows = con.execute(
                "SELECT * FROM datasets WHERE project = ? ORDER BY created_at, name", (project,)
            ).fetchall()
        return [{**json.loads(r["spec"]), "created_at": r["created_at"]} for r in rows]

    def save_dataset(self, project: str, name: str, spec: dict[str, Any], *, overwrite: bool = False) -> None:
        """Record a saved training set; an existing name is kept unless ``overwrite``."""
        with self.transaction() as tx:
            exists = tx.con.execute(
                "SELECT 1 FROM datasets WHERE project = ? AND name = ?", (project, name)
            ).fetchone()
            if exists and not overwrite:
                raise RegistryError(
                    f"a training set named {name!r} is already saved; pick another name or pass overwrite=True"
                )
            tx.con.execute("INSERT OR REPLACE INTO datasets VALUES (?, ?, ?, ?)",
                           (project, name, utcnow(), json.dumps(spec, sort_keys=True, default=str)))

    def record_statistics(self, project: str, subject: str, run_id: str | None, stats: dict[str, Any]) -> None:
        """Keep the column statistics of a run or a saved training set (``subject``: a view's name,
        or ``training_set:<name>``)."""
        with self.transaction() as tx:
            tx.con.execute("INSERT INTO statistics VALUES (?, ?, ?, ?, ?)",
                           (project, subject, run_id, utcnow(), json.dumps(stats, sort_keys=True)))

    def statistics(self, project: str, subject: str, run_id: str | None = None) -> dict[str, Any] | None:
        """The newest statistics of ``subject`` (of one run when ``run_id`` is given), with
        ``run_id`` and ``created_at``; None when there are none."""
        sql = "SELECT * FROM statistics WHERE project = ? AND subject = ?"
        args: list[Any] = [project, subject]
        if run_id is not None:
            sql += " AND run_id = ?"
            args.append(run_id)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT 1"
        with self.read() as con:
            row = con.execute(sql, args).fetchone()
        if row is None:
            return None
        return {"run_id": row["run_id"], "created_at": row["created_at"], "columns": json.loads(row["stats"])}

    def record_validation(self, project: str, subject: str, run_id: str | None, result: dict[str, Any]) -> None:
        """Keep a validation's outcome (``subject`` is the view's name)."""
        with self.transaction() as tx:
            tx.con.execute("INSERT INTO validations VALUES (?, ?, ?, ?, ?, ?)", (
                project, subject, run_id, utcnow(), int(bool(result.get("success"))),
                json.dumps(result, sort_keys=True, default=str)))

    def validations(self, project: str, subject: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recorded validations, newest first."""
        sql = "SELECT * FROM validations WHERE project = ?"
        args: list[Any] = [project]
        if subject is not None:
            sql += " AND subject = ?"
            args.append(subject)
        sql += " ORDER BY created_at DESC LIMIT ?"
        args.append(limit)
        with self.read() as con:
            rows = con.execute(sql, args).fetchall()
        return [{"subject": r["subject"], "run_id": r["run_id"], "created_at": r["created_at"],
                 **json.loads(r["result"])} for r in rows]

    def lineage(self, project: str) -> list[LineageEdge]:
        """The project's lineage edges as last stored, sorted (empty if never stored)."""
        with self.read() as con:
            return _lineage(con, project)

    def latest_apply(self, project: str) -> int | None:
        """The id of the project's last apply (changes whenever anything is applied)."""
        with self.read() as con:
            row = con.execute("SELECT MAX(id) FROM applies WHERE project = ?", (project,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def committed_runs(self, project: str, view: str, kind: str = "offline") -> list[Run]:
        """Committed runs of a view, oldest commit first."""
        with self.read() as con:
            rows = con.execute(
                "SELECT * FROM runs WHERE project = ? AND view = ? AND kind = ? AND status = 'committed' "
                "ORDER BY commit_seq",
                (project, view, kind),
            ).fetchall()
        return [_run(r) for r in rows]

    # -- run bookkeeping -------------------------------------------------------------------------

    def begin_run(
        self, project: str, view: str, kind: str, *, window_start: str | None, window_end: str | None,
        storage_fingerprint: str | None,
    ) -> str:
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        with self.transaction() as tx:
            tx.con.execute(
                "INSERT INTO runs (run_id, project, view, kind, window_start, window_end, status, "
                "storage_fingerprint, started_at) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (run_id, project, view, kind, window_start, window_end, storage_fingerprint, utcnow()),
            )
        return run_id

    def finish_run(
        self, run_id: str, *, status: str, rows: int | None = None, location: str | None = None,
        message: str | None = None, started: float | None = None,
    ) -> None:
        """Mark a run ``committed`` (its data becomes visible) or ``failed``."""
        with self.transaction() as tx:
            seq = None
            if status == "committed":
                seq = tx.con.execute("SELECT COALESCE(MAX(commit_seq), 0) + 1 FROM runs").fetchone()[0]
            tx.con.execute(
                "UPDATE runs SET status = ?, rows = ?, location = ?, message = ?, finished_at = ?, "
                "duration_s = ?, commit_seq = ? WHERE run_id = ?",
                (status, rows, location, message, utcnow(),
                 None if started is None else round(time.monotonic() - started, 6), seq, run_id),
            )


class RegistryTransaction:
    """Writes inside one registry transaction."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def list_objects(self, project: str, kind: str | None = None) -> list[StoredObject]:
        return _list_objects(self.con, project, kind)

    def new_apply(self, project: str, summary: dict[str, Any]) -> int:
        try:
            user = getpass.getuser()
        except Exception:  # no user name in some containers
            user = "unknown"
        cur = self.con.execute(
            "INSERT INTO applies (project, applied_at, applied_by, summary) VALUES (?, ?, ?, ?)",
            (project, utcnow(), user, json.dumps(summary, sort_keys=True)),
        )
        return int(cur.lastrowid or 0)

    def put_object(
        self, project: str, apply_id: int, *, kind: str, name: str, spec: dict[str, Any],
        data_fingerprint: str, metadata_fingerprint: str, storage_fingerprint: str | None,
    ) -> int:
        """Create or update an object; returns its new version."""
        row = self.con.execute(
            "SELECT version, created_at FROM objects WHERE project = ? AND kind = ? AND name = ?",
            (project, kind, name),
        ).fetchone()
        now = utcnow()
        version = 1 if row is None else row["version"] + 1
        created = now if row is None else row["created_at"]
        blob = json.dumps(spec, sort_keys=True)
        self.con.execute(
            "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (project, kind, name, version, data_fingerprint, metadata_fingerprint, storage_fingerprint,
             blob, created, now, apply_id),
        )
        self.con.execute(
            "INSERT INTO object_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (project, kind, name, version, "create" if row is None else "update", data_fingerprint,
             metadata_fingerprint, blob, apply_id),
        )
        return version

    def replace_lineage(self, project: str, edges: Iterable[LineageEdge]) -> None:
        """Make ``edges`` the project's whole lineage (commits with the transaction)."""
        self.con.execute("DELETE FROM lineage WHERE project = ?", (project,))
        self.con.executemany(
            "INSERT OR REPLACE INTO lineage VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(project, e.node.kind, e.node.owner, e.node.column, e.upstream.kind, e.upstream.owner,
              e.upstream.column, e.detail) for e in edges],
        )

    def lineage(self, project: str) -> list[LineageEdge]:
        return _lineage(self.con, project)

    def delete_object(self, project: str, apply_id: int, *, kind: str, name: str) -> None:
        row = self.con.execute(
            "SELECT * FROM objects WHERE project = ? AND kind = ? AND name = ?", (project, kind, name)
        ).fetchone()
        if row is None:
            return
        self.con.execute(
            "DELETE FROM objects WHERE project = ? AND kind = ? AND name = ?", (project, kind, name)
        )
        self.con.execute(
            "INSERT INTO object_history VALUES (?, ?, ?, ?, 'delete', ?, ?, ?, ?)",
            (project, kind, name, row["version"], row["data_fingerprint"], row["metadata_fingerprint"],
             row["spec"], apply_id),
        )


def _list_objects(con: sqlite3.Connection, project: str, kind: str | None) -> list[StoredObject]:
    if kind is None:
        rows = con.execute("SELECT * FROM objects WHERE project = ? ORDER BY kind, name", (project,))
    else:
        rows = con.execute(
            "SELECT * FROM objects WHERE project = ? AND kind = ? ORDER BY name", (project, kind)
        )
    return [_object(r) for r in rows.fetchall()]


def _lineage(con: sqlite3.Connection, project: str) -> list[LineageEdge]:
    rows = con.execute("SELECT * FROM lineage WHERE project = ?", (project,)).fetchall()
    edges = [
        LineageEdge(LineageNode(r["node_kind"], r["node_owner"], r["node_column"]),
                    LineageNode(r["up_kind"], r["up_owner"], r["up_column"]), r["detail"])
        for r in rows
    ]
    return sorted(edges, key=edge_order)


def _object(row: sqlite3.Row) -> StoredObject:
    return StoredObject(
        kind=row["kind"], name=row["name"], version=row["version"],
        data_fingerprint=row["data_fingerprint"], metadata_fingerprint=row["metadata_fingerprint"],
        storage_fingerprint=row["storage_fingerprint"], spec=json.loads(row["spec"]),
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


def _run(row: sqlite3.Row) -> Run:
    fields = row.keys()  # sqlite3.Row iterates over values, not keys
    return Run(**{k: row[k] for k in fields if k != "project"})
