"""Training/serving skew, measured as Chronon does: replay logged online lookups through the
point-in-time join and count, per feature, how often the served value differs from the replayed one.

The feature server logs a sample of its ``GetOnlineFeatures`` calls (``featurestore serve
--log-sample RATE``; :class:`ServedLog`) to Parquet files under the offline store,
``<offline_store.path>/<project>/_served/date=YYYY-MM-DD/<pid>-<token>-<seq>.parquet``, one
feature set (refs or service, and ``full_feature_names``) per file. A row is one served entity:

* ``__request_time`` (UTC, microseconds: the instant that judged max age), ``__features`` (the
  service name or the list of refs, as JSON) and ``__full_feature_names``;
* the entity keys and request values, named and typed as sent;
* per feature, its output name (the served value, typed as the feature) and ``<name>__status``.

:func:`skew_report` turns those rows into an entity frame (the request time as its timestamp), runs
``get_historical_features`` with the same features, and compares cell by cell. A cell is skewed
when exactly one side is null, or both hold values that differ (floats: relative tolerance 1e-9).
A value served ``NOT_FOUND``, ``OUTSIDE_MAX_AGE`` or ``IMPUTED`` counts as null online, so a
replayed value where serving had none is skew too.

What it measures: online values are as of the last materialization (or push), while the replay
takes each feature's point-in-time value at the request time. Source rows newer than the last run
are therefore skew (staleness), as are values pushed online only, aggregation windows that moved
since the run, a definition changed after the lookup, or a bug in either path. A store
materialized up to the present, with nothing pushed online only, shows none.

    report = skew_report(store, since="2026-01-01")
    print(report.summary())
    [f.feature for f in report.worst]     # ['txn_stats:txn_avg']
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.errors import FeatureStoreError, RetrievalError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from featurestore.alerts import Alert, Alerter
    from featurestore.online.retrieval import OnlineResponse, ViewValues
    from featurestore.store import FeatureStore
    from featurestore.types import DType

__all__ = [
    "FeatureSkew",
    "ServedLog",
    "SkewExample",
    "SkewReport",
    "served_log_path",
    "skew_report",
]

SERVED_DIR = "_served"
TIME_COLUMN = "__request_time"
FEATURES_COLUMN = "__features"
FULL_NAMES_COLUMN = "__full_feature_names"
STATUS_SUFFIX = "__status"
RELATIVE_TOLERANCE = 1e-9
# Parquet schema metadata: the layout version of a log file.
FORMAT_KEY = b"featurestore.served_log"
FORMAT_VERSION = b"1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING_STATUSES = ("NOT_FOUND", "OUTSIDE_MAX_AGE", "IMPUTED")

log = logging.getLogger("featurestore.server.served_log")


def served_log_path(store: FeatureStore) -> Path:
    """Where the feature server logs served vectors of ``store``'s project."""
    return store.config.offline_store_path / store.project / SERVED_DIR


# -- logging served vectors (the feature server) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Record:
    """One sampled call, as references to what the call built anyway (converted in the log's thread)."""

    request_us: int
    features: str | tuple[str, ...]
    full_feature_names: bool
    entities: Mapping[str, Sequence[Any]]
    served: list[ViewValues] | OnlineResponse
    rows: int


class ServedLog:
    """A sample of served feature vectors, buffered in memory and written to Parquet in the background.

    The feature server calls it on its event loop: ``sampled()`` draws per call, ``record_views`` or
    ``record_response`` keeps references to the call's entities and values. ``start()`` runs a task
    that hands the buffer to a thread of its own every ``flush_seconds`` (sooner once ``flush_rows``
    rows wait); ``close()`` writes what is left. Beyond ``max_rows`` waiting rows a call is dropped
    and counted in ``dropped_rows``: logging never blocks a request nor grows without bound. A
    process killed without a graceful stop loses at most its last ``flush_seconds`` of samples.

        served = ServedLog(served_log_path(store), 0.01)
        served.start()                       # on the running event loop
        if served.sampled():
            served.record_views(now_us, ("txn_stats:txn_avg",), False, entities, views)
        await served.close()
    """

    def __init__(
        self, root: Path, rate: float, *, flush_seconds: float = 5.0, flush_rows: int = 10_000,
        max_rows: int = 100_000, rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"the log sample rate must be above 0 and at most 1, got {rate!r}")
        if flush_seconds <= 0 or flush_rows < 1 or max_rows < flush_rows:
            raise ValueError("need flush_seconds > 0 and 1 <= flush_rows <= max_rows, got "
                             f"{flush_seconds}, {flush_rows}, {max_rows}")
        self.root = Path(root)
        # Calls sampled (0..1]; 1.0 logs every call.
        self.rate = rate
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.max_rows = max_rows
        # Rows written, rows dropped because the buffer was full, rows lost to a failed write.
        self.logged_rows = 0
        self.dropped_rows = 0
        self.failed_rows = 0
        self.files_written = 0
        self._rng = rng
        self._buffer: list[_Record] = []
        self._buffered = 0
        self._reported_drops = 0
        self._closed = False
        # pid and a random token: a restarted process (same pid, as in containers) never overwrites.
        self._prefix = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._seq = itertools.count(1)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="featurestore-served-log")

    def __repr__(self) -> str:
        return f"ServedLog({str(self.root)!r}, rate={self.rate})"

    def sampled(self) -> bool:
        """Whether to log this call."""
        return self.rate >= 1.0 or self._rng() < self.rate

    def record_views(
        self, request_us: int, features: str | tuple[str, ...], full_feature_names: bool,
        entities: Mapping[str, Sequence[Any]], views: list[ViewValues],
    ) -> None:
        """Log a call answered from decoded views (the server's fast path). ``entities`` holds the
        keys and request values; nothing passed in may change afterwards."""
        self._add(_Record(request_us, features, full_feature_names, entities, views, _rows(entities)))

    def record_response(
        self, request_us: int, features: str | tuple[str, ...], full_feature_names: bool,
        entities: Mapping[str, Sequence[Any]], response: OnlineResponse,
    ) -> None:
        """Log a call answered with an ``OnlineResponse`` (on-demand features, imputation)."""
        self._add(_Record(request_us, features, full_feature_names, entities, response, _rows(entities)))

    def _add(self, record: _Record) -> None:
        if self._closed or record.rows == 0:
            return
        if self._buffered + record.rows > self.max_rows:
            self.dropped_rows += record.rows
            return
        self._buffer.append(record)
        self._buffered += record.rows
        if self._buffered >= self.flush_rows and self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        """Write the buffer in the background from now on (call on the running event loop)."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # _write handles its own errors; this keeps the loop alive whatever happens
                log.exception("writing the served-vector log failed")
            if self.dropped_rows > self._reported_drops:
                log.warning("served-vector log buffer full: %d row(s) not logged so far (max %d waiting)",
                            self.dropped_rows, self.max_rows, extra={"dropped_rows": self.dropped_rows})
                self._reported_drops = self.dropped_rows

    async def flush(self) -> int:
        """Write what the buffer holds now (in the log's thread); the number of rows handed over."""
        if not self._buffer:
            return 0
        batch, self._buffer, rows, self._buffered = self._buffer, [], self._buffered, 0
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._write, batch)
        await asyncio.shield(future)  # a cancelled caller does not cancel the write
        return rows

    async def close(self) -> None:
        """Stop the background task, write the rest and wait for the writes to finish."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        await asyncio.to_thread(self._executor.shutdown, True)
        log.info("served-vector log closed", extra={
            "path": str(self.root), "logged_rows": self.logged_rows, "files": self.files_written,
            "dropped_rows": self.dropped_rows, "failed_rows": self.failed_rows})

    def _write(self, batch: list[_Record]) -> None:
        """One file per feature set and day (of the request time). Runs in the log's thread."""
        import pyarrow.parquet as pq

        groups: dict[tuple[str, bool, str], _Columns] = {}
        for record in batch:
            features = json.dumps(record.features if isinstance(record.features, str) else list(record.features))
            day = (_EPOCH + timedelta(microseconds=record.request_us)).date().isoformat()
            columns = groups.setdefault((features, record.full_feature_names, day), _Columns())
            try:
                added = columns.add(record)
            except Exception:
                log.exception("could not log a served call of %s", features)
                added = False
            if not added:
                self.failed_rows += record.rows
        for (features, full, day), columns in groups.items():
            if columns.n == 0:
                continue
            path = self.root / f"date={day}" / f"{self._prefix}-{next(self._seq):06d}.parquet"
            tmp = path.with_name(path.name + ".tmp")
            try:
                table = columns.table(features, full)
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, tmp)
                os.replace(tmp, path)  # readers see whole files only
            except Exception:
                self.failed_rows += columns.n
                log.exception("could not write %d served row(s) to %s", columns.n, path)
                with contextlib.suppress(OSError):
                    tmp.unlink()
                continue
            self.logged_rows += columns.n
            self.files_written += 1


def _rows(entities: Mapping[str, Sequence[Any]]) -> int:
    return len(next(iter(entities.values()), ()))


class _Columns:
    """The rows of one log file, column by column; a column a record lacks is padded with nulls."""

    def __init__(self) -> None:
        self.n = 0
        self.times: list[int] = []
        self.entities: dict[str, list[Any]] = {}
        self.values: dict[str, list[Any]] = {}
        self.statuses: dict[str, list[str | None]] = {}
        self.dtypes: dict[str, DType | None] = {}
        self._warned = False

    def add(self, record: _Record) -> bool:
        served = list(_served_columns(record.served))
        names = {name for name, *_ in served}
        clash = sorted((names | {n + STATUS_SUFFIX for n in names}) & set(record.entities))
        if clash:
            if not self._warned:
                log.warning("not logging calls whose entity columns %s are also feature names", clash)
                self._warned = True
            return False
        n = record.rows
        short = [name for name, values in record.entities.items() if len(values) != n]
        short += [name for name, _, values, statuses in served if len(values) != n or len(statuses) != n]
        if short:  # checked before any change: a bad call never shifts the other rows
            raise ValueError(f"served columns {short} do not have {n} rows")
        self.times.extend([record.request_us] * n)
        for name, values in record.entities.items():
            self.entities.setdefault(name, [None] * self.n).extend(values)
        for name, dtype, values, statuses in served:
            self.values.setdefault(name, [None] * self.n).extend(values)
            self.statuses.setdefault(name, [None] * self.n).extend(statuses)
            self.dtypes[name] = dtype
        self.n += n
        for column in itertools.chain(self.entities.values(), self.values.values(), self.statuses.values()):
            if len(column) < self.n:
                column.extend([None] * (self.n - len(column)))
        return True

    def table(self, features: str, full_feature_names: bool) -> pa.Table:
        import pyarrow as pa

        names = [TIME_COLUMN, FEATURES_COLUMN, FULL_NAMES_COLUMN]
        arrays = [
            pa.array(self.times, pa.timestamp("us", tz="UTC")),
            pa.array([features] * self.n, pa.string()),
            pa.array([full_feature_names] * self.n, pa.bool_()),
        ]
        for name, values in self.entities.items():
            names.append(name)
            arrays.append(_array(values, None))
        for name, values in self.values.items():
            names += [name, name + STATUS_SUFFIX]
            arrays += [_array(values, self.dtypes[name]), pa.array(self.statuses[name], pa.string())]
        return pa.table(arrays, names=names).replace_schema_metadata({FORMAT_KEY: FORMAT_VERSION})


def _served_columns(served: list[ViewValues] | OnlineResponse) -> Iterator[tuple[str, Any, list[Any], list[str]]]:
    """(output name, feature type, values, status names) of every served feature."""
    if isinstance(served, list):
        for view in served:
            statuses = [s.value for s in view.statuses]
            for name, dtype, values in zip(view.names, view.dtypes, view.columns, strict=True):
                yield name, dtype, values, statuses
        return
    converted: dict[int, list[str]] = {}  # the features of one view share one status list
    for name, values in served.values.items():
        raw = served.statuses[name]
        found = converted.get(id(raw))
        if found is None:
            found = converted[id(raw)] = [s.value for s in raw]
        yield name, served.dtypes.get(name), values, found


def _array(values: list[Any], dtype: DType | None) -> pa.Array:
    """Values as an Arrow array of the feature's type; inferred when there is none (entity keys,
    request values) or it does not fit; strings when nothing else does."""
    import pyarrow as pa

    if dtype is not None:
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            return pa.array(values, dtype.to_arrow())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


# -- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkewExample:
    """One skewed cell: whose, when, what was served and what the replay gives."""

    keys: dict[str, Any]  # entity keys and request values of the row
    request_time: datetime
    online: Any  # the served value (None unless PRESENT or IMPUTED)
    offline: Any  # the point-in-time value at request_time
    status: str  # the served status

    def to_dict(self) -> dict[str, Any]:
        return {"keys": _jsonable(self.keys), "request_time": self.request_time.isoformat(),
                "online": _jsonable(self.online), "offline": _jsonable(self.offline), "status": self.status}

    def text(self) -> str:
        keys = ", ".join(f"{k}={v!r}" for k, v in self.keys.items())
        return (f"{keys} at {self.request_time.isoformat()}: online {self.online!r} ({self.status}), "
                f"offline {self.offline!r}")


@dataclass(frozen=True)
class FeatureSkew:
    """The comparison of one feature over every logged row that served it."""

    feature: str  # "view:feature"
    rows: int  # logged rows compared
    mismatches: int
    online_missing: int  # served null (not found, too old, imputed, or a null value); the replay has a value
    offline_missing: int  # served a value; the replay has none
    different: int  # both have a value, and the values differ
    not_found: int  # rows served NOT_FOUND (compared as null)
    outside_max_age: int  # rows served OUTSIDE_MAX_AGE (compared as null)
    imputed: int  # rows served IMPUTED (compared as null: the stored value was missing)
    examples: tuple[SkewExample, ...] = ()

    @property
    def rate(self) -> float:
        """Mismatches per compared row (0.0 when nothing was compared)."""
        return self.mismatches / self.rows if self.rows else 0.0

    @property
    def view(self) -> str:
        return self.feature.split(":", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "rows": self.rows, "mismatches": self.mismatches, "rate": self.rate,
                "online_missing": self.online_missing, "offline_missing": self.offline_missing,
                "different": self.different, "not_found": self.not_found,
                "outside_max_age": self.outside_max_age, "imputed": self.imputed,
                "examples": [e.to_dict() for e in self.examples]}


@dataclass(frozen=True)
class SkewReport:
    """Training/serving skew per feature over the logged rows of a time window."""

    project: str
    root: Path  # where the logs were read
    since: datetime | None
    until: datetime | None
    threshold: float  # a feature whose rate is above it is reported (and alerted on)
    files: int
    rows: int  # logged rows read in the window
    feature_sets: int
    features: tuple[FeatureSkew, ...]  # by feature ref
    errors: tuple[str, ...] = ()  # feature sets (or features) that could not be replayed, and why
    alerts: tuple[Alert, ...] = field(default=(), repr=False)

    @property
    def empty(self) -> bool:
        """Nothing was logged in the window."""
        return self.rows == 0

    @property
    def worst(self) -> list[FeatureSkew]:
        """The features with mismatches, highest rate first."""
        skewed = [f for f in self.features if f.mismatches]
        return sorted(skewed, key=lambda f: (-f.rate, -f.mismatches, f.feature))

    @property
    def over_threshold(self) -> list[FeatureSkew]:
        """The features whose mismatch rate is above ``threshold``, highest first."""
        return [f for f in self.worst if f.rate > self.threshold]

    def __getitem__(self, feature: str) -> FeatureSkew:
        for f in self.features:
            if f.feature == feature:
                return f
        raise KeyError(f"{feature!r} is not in the report; it has {[f.feature for f in self.features]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project, "root": str(self.root),
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "threshold": self.threshold, "files": self.files, "rows": self.rows, "feature_sets": self.feature_sets,
            "features": [f.to_dict() for f in self.features],
            "over_threshold": [f.feature for f in self.over_threshold], "errors": list(self.errors),
        }

    def summary(self) -> str:
        """A text table for the terminal (worst features first), the features over the threshold
        with examples, and what could not be replayed."""
        window = _window(self.since, self.until)
        if self.empty:
            return (f"No served vectors logged in {self.root}{window}. Run the feature server with "
                    "--log-sample RATE (for example --log-sample 0.01) to log a sample of online lookups, "
                    "then run this again.")
        lines = [f"Training/serving skew of project {self.project}: {self.rows:,} logged row(s) in "
                 f"{self.feature_sets} feature set(s), {self.files} file(s) in {self.root}{window}"]
        if self.features:
            ordered = self.worst + [f for f in self.features if not f.mismatches]
            header = ["feature", "rows", "mismatches", "rate", "online null", "offline null", "different",
                      "not found", "too old", "imputed"]
            table = [header] + [
                [f.feature, f"{f.rows:,}", f"{f.mismatches:,}", f"{f.rate:.2%}", f"{f.online_missing:,}",
                 f"{f.offline_missing:,}", f"{f.different:,}", f"{f.not_found:,}", f"{f.outside_max_age:,}",
                 f"{f.imputed:,}"] for f in ordered]
            widths = [max(len(r[i]) for r in table) for i in range(len(header))]
            rendered = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                                  enumerate(zip(r, widths, strict=True))).rstrip() for r in table]
            rendered.insert(1, "  ".join("-" * w for w in widths))
            lines += ["", *rendered, ""]
            over = self.over_threshold
            if over:
                lines.append(f"{len(over)} feature(s) over the {self.threshold:.2%} threshold: "
                             + ", ".join(f.feature for f in over))
                for f in over:
                    lines += [f"  {f.feature}, e.g.:"] + [f"    {e.text()}" for e in f.examples]
            else:
                lines.append(f"No feature over the {self.threshold:.2%} threshold.")
        else:
            lines.append("No logged feature matched the features asked for.")
        if self.errors:
            lines += ["", "Not replayed:"] + [f"  {e}" for e in self.errors]
        return "\n".join(lines)


def skew_report(
    store: FeatureStore,
    *,
    since: datetime | date | str | None = None,
    until: datetime | date | str | None = None,
    features: Sequence[str] | str | None = None,
    threshold: float = 0.01,
    alerter: Alerter | None = None,
    max_examples: int = 5,
) -> SkewReport:
    """Replay the served vectors logged in ``[since, until)`` through the point-in-time join and
    count mismatches per feature.

    ``features`` limits the comparison to these refs (``"view:feature"``) or output names. A
    feature whose mismatch rate is above ``threshold`` gets a ``skew`` alert (one per view), kept on
    ``report.alerts`` and sent through ``alerter`` when given. Feature sets that cannot be replayed
    any more (a view or service since removed) are listed in ``report.errors``.

        report = skew_report(store, since="2026-01-30", threshold=0.001)
        print(report.summary())
        report["txn_stats:txn_avg"].rate
    """
    from featurestore.timeutil import to_utc

    if not 0.0 <= threshold <= 1.0:
        raise RetrievalError(f"the skew threshold is a rate between 0 and 1, got {threshold!r}")
    start = None if since is None else to_utc(since)
    end = None if until is None else to_utc(until)
    if start is not None and end is not None and start >= end:
        raise RetrievalError(f"skew window: since {start.isoformat()} must be before until {end.isoformat()}")
    wanted = None if features is None else ({features} if isinstance(features, str) else set(features))
    root = served_log_path(store)
    files, groups = _read_logs(root, start, end)
    acc: dict[str, _Accumulator] = {}
    errors: list[str] = []
    kinds: dict[str, str] = {}
    for (features_json, full), frame in groups.items():
        try:
            _replay(store, json.loads(features_json), full, frame, wanted, acc, kinds, errors, max_examples)
        except FeatureStoreError as exc:
            errors.append(f"{_label(features_json, full)} ({frame.height:,} row(s)): {exc}")
    report = SkewReport(
        project=store.project, root=root, since=start, until=end, threshold=threshold, files=files,
        rows=sum(f.height for f in groups.values()), feature_sets=len(groups),
        features=tuple(acc[ref].result(ref) for ref in sorted(acc)), errors=tuple(errors),
    )
    alerts = _alerts(report, kinds)
    if alerter is not None:
        for alert in alerts:
            alerter.send(alert)
    return SkewReport(**{**vars(report), "alerts": tuple(alerts)})


def _read_logs(
    root: Path, since: datetime | None, until: datetime | None
) -> tuple[int, dict[tuple[str, bool], pl.DataFrame]]:
    """The logged rows in ``[since, until)``, one frame per feature set; and how many files held them."""
    import polars as pl

    if not root.is_dir():
        return 0, {}
    paths: list[Path] = []
    for folder in sorted(root.glob("date=*")):
        try:
            day = date.fromisoformat(folder.name.removeprefix("date="))
        except ValueError:
            continue
        if (since is not None and day < since.date()) or (until is not None and day > until.date()):
            continue
        paths += sorted(folder.glob("*.parquet"))
    parts: dict[tuple[str, bool], list[pl.DataFrame]] = {}
    files = 0
    for path in paths:
        frame = pl.read_parquet(path)
        if since is not None:
            frame = frame.filter(pl.col(TIME_COLUMN) >= since)
        if until is not None:
            frame = frame.filter(pl.col(TIME_COLUMN) < until)
        if frame.height == 0:
            continue
        files += 1
        for key, part in frame.partition_by([FEATURES_COLUMN, FULL_NAMES_COLUMN], as_dict=True).items():
            features_json, full = key
            parts.setdefault((str(features_json), bool(full)), []).append(part)
    return files, {key: pl.concat(frames, how="diagonal_relaxed") for key, frames in parts.items()}


@dataclass
class _Accumulator:
    rows: int = 0
    mismatches: int = 0
    online_missing: int = 0
    offline_missing: int = 0
    different: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    examples: list[SkewExample] = field(default_factory=list)

    def result(self, ref: str) -> FeatureSkew:
        return FeatureSkew(ref, self.rows, self.mismatches, self.online_missing, self.offline_missing,
                           self.different, self.statuses.get("NOT_FOUND", 0),
                           self.statuses.get("OUTSIDE_MAX_AGE", 0), self.statuses.get("IMPUTED", 0),
                           tuple(self.examples))


def _replay(
    store: FeatureStore, features: str | list[str], full: bool, frame: pl.DataFrame, wanted: set[str] | None,
    acc: dict[str, _Accumulator], kinds: dict[str, str], errors: list[str], max_examples: int,
) -> None:
    """Replay one feature set's logged rows and add each feature's comparison to ``acc``."""
    requests = store.resolve_features(features, full_feature_names=full)
    refs: dict[str, str] = {}
    for req in requests:
        refs.update({out: f"{req.view.name}:{f}" for f, out in zip(req.features, req.output_names, strict=True)})
        kinds[req.view.name] = "feature view"
    for odr in requests.on_demand:
        refs.update({out: f"{odr.view.name}:{f}" for f, out in zip(odr.features, odr.output_names, strict=True)})
        kinds[odr.view.name] = "on-demand feature view"
    logged = [c.removesuffix(STATUS_SUFFIX) for c in frame.columns
              if c.endswith(STATUS_SUFFIX) and c.removesuffix(STATUS_SUFFIX) in frame.columns]
    compared = [n for n in logged if wanted is None or n in wanted or refs.get(n, n) in wanted]
    if not compared:
        return
    served = set(logged) | {n + STATUS_SUFFIX for n in logged}
    entity_columns = [c for c in frame.columns if c not in served and c not in (FEATURES_COLUMN, FULL_NAMES_COLUMN)]
    entity = frame.select(entity_columns)
    replayed = store.get_historical_features(entity, features, full_feature_names=full, timestamp_column=TIME_COLUMN)
    if replayed.height != frame.height:  # the join keeps every row, in order; anything else is a bug
        raise RetrievalError(f"the replay returned {replayed.height} rows for {frame.height} logged rows")
    keys = [c for c in entity_columns if c != TIME_COLUMN]
    for name in compared:
        ref = refs.get(name, name)
        if name not in replayed.columns:
            errors.append(f"{ref}: logged as {name!r}, but {_label(json.dumps(features), full)} no longer "
                          "gives that column")
            continue
        online, offline = frame.get_column(name), replayed.get_column(name)
        status = frame.get_column(name + STATUS_SUFFIX)
        on_missing = (online.is_null() | (status != "PRESENT")).fill_null(True)
        off_missing = offline.is_null()
        equal = _equal(online, offline).fill_null(False)
        both = ~on_missing & ~off_missing
        different = both & ~equal
        mismatch = (on_missing != off_missing) | different
        a = acc.setdefault(ref, _Accumulator())
        a.rows += frame.height
        a.mismatches += int(mismatch.sum())
        a.online_missing += int((on_missing & ~off_missing).sum())
        a.offline_missing += int((~on_missing & off_missing).sum())
        a.different += int(different.sum())
        for value, count in status.value_counts().iter_rows():
            if value in _MISSING_STATUSES:
                a.statuses[value] = a.statuses.get(value, 0) + int(count)
        for i in mismatch.arg_true().head(max(0, max_examples - len(a.examples))).to_list():
            a.examples.append(SkewExample(
                keys={k: _at(frame.get_column(k), i) for k in keys},
                request_time=_at(frame.get_column(TIME_COLUMN), i),
                online=_at(online, i), offline=_at(offline, i), status=str(_at(status, i)),
            ))


def _at(series: pl.Series, i: int) -> Any:
    """Row ``i`` as a Python value (a list for list columns, not a Series)."""
    return series.slice(i, 1).to_list()[0]


def _equal(online: pl.Series, offline: pl.Series) -> pl.Series:
    """Row-wise equality (null where either side is null): numbers with a relative tolerance when
    either is a float, NaN equal to NaN; other types exactly, after casting to the served type."""
    import polars as pl

    if online.dtype.is_numeric() and offline.dtype.is_numeric():
        if online.dtype.is_float() or offline.dtype.is_float():
            x, y = pl.col("x"), pl.col("y")
            frame = pl.DataFrame({"x": online.cast(pl.Float64), "y": offline.cast(pl.Float64)})
            close = (x - y).abs() <= RELATIVE_TOLERANCE * pl.max_horizontal(x.abs(), y.abs())
            return frame.select(((x == y) | close | (x.is_nan() & y.is_nan())).alias("eq")).to_series()
        return online.cast(pl.Int64, strict=False) == offline.cast(pl.Int64, strict=False)
    if online.dtype != offline.dtype:
        try:
            offline = offline.cast(online.dtype)
        except pl.exceptions.PolarsError:
            return online.cast(pl.String, strict=False) == offline.cast(pl.String, strict=False)
    return online == offline


def _alerts(report: SkewReport, kinds: Mapping[str, str]) -> list[Alert]:
    """One ``skew`` alert per view with features over the threshold."""
    from featurestore.alerts import Alert

    by_view: dict[str, list[FeatureSkew]] = {}
    for f in report.over_threshold:
        by_view.setdefault(f.view, []).append(f)
    alerts = []
    for view, feats in by_view.items():
        worst = feats[0]
        message = (f"training/serving skew in {len(feats)} feature(s) of {view} above {report.threshold:.2%}: "
                   f"{worst.feature} mismatches in {worst.rate:.2%} of {worst.rows:,} logged rows"
                   f"{_window(report.since, report.until)}")
        alerts.append(Alert(
            kind="skew", severity="warning", project=report.project,
            subject=f"{kinds.get(view, 'feature view')} '{view}'", message=message,
            details={"threshold": report.threshold, "since": report.since, "until": report.until,
                     "features": [f.to_dict() for f in feats]},
            report=str(report.root),
        ))
    return alerts


def _label(features_json: str, full: bool) -> str:
    features = json.loads(features_json)
    what = f"feature service {features!r}" if isinstance(features, str) else f"features {features}"
    return what + (" (full feature names)" if full else "")


def _window(since: datetime | None, until: datetime | None) -> str:
    if since is None and until is None:
        return ""
    if until is None:
        return f" since {since.isoformat() if since else ''}"
    if since is None:
        return f" before {until.isoformat()}"
    return f" from {since.isoformat()} to {until.isoformat()}"


def _jsonable(value: Any) -> Any:
    """A value of an example as plain JSON: datetimes as ISO text, bytes as hex, lists and dicts inside."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, str):
        return [_jsonable(v) for v in value]
    return value
