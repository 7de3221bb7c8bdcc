"""``FeatureStore``: the Python entry point to one feature repo.

A thin facade: it wires the config, registry and offline store together and delegates the work to
``repo``, ``plan`` and ``offline``. Reads (training sets, listings) use what was *applied* to the
registry, not the files on disk, so a notebook sees exactly what ``apply`` published.

Example::

    store = FeatureStore("feature_repo")
    store.apply()
    training = store.get_historical_features(entity_df, features=["user_profile:age"])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.config import RepoConfig, load_config
from featurestore.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    Location,
    OnDemandFeatureView,
    definition_from_spec,
)
from featurestore.errors import RetrievalError, UnknownObjectError
from featurestore.plan import Plan, apply_plan, make_plan
from featurestore.registry import Registry, Run
from featurestore.repo import RepoContents, load_repo
from featurestore.resolve import FeatureRequests, Features, resolve_features
from featurestore.training_sets import TrainingSets

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    import pyarrow as pa

    from featurestore.materialize import OnlineRunResult, ViewProgress
    from featurestore.offline.store import OfflineStore, RunResult
    from featurestore.online.base import OnlineStore
    from featurestore.online.retrieval import OnlineResponse
    from featurestore.validation import Checker, ValidationResult

__all__ = ["FeatureStore", "Features", "resolve_features", "to_arrow_table"]
PUSH_TARGETS = ("online", "offline", "online_and_offline")
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)  # the start of a window with no start


class FeatureStore:
    """One feature repo: its config, registry and stores."""

    def __init__(self, repo_path: str | os.PathLike[str] | None = None) -> None:
        self.config: RepoConfig = load_config(repo_path)
        self.repo_path: Path = self.config.repo_path
        self.project: str = self.config.project
        self.registry = Registry(self.config.registry_path)
        self._online: OnlineStore | None = None
        # Resolved feature requests for online reads, valid while the registry's last apply is
        # unchanged (checked at most every REGISTRY_CHECK_SECONDS).
        self._resolved: dict[tuple[Any, bool], FeatureRequests] = {}
        self._resolved_apply: int | None = None
        self._resolved_checked = 0.0
        self.training_sets = TrainingSets(self.registry, self.project)

    REGISTRY_CHECK_SECONDS = 1.0

    def __repr__(self) -> str:
        return f"FeatureStore(project={self.project!r}, repo={str(self.repo_path)!r})"

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the online store connection (and stop the embedded server if this store started
        it and nothing else in the process uses it). The store reopens it when needed."""
        if self._online is not None:
            online, self._online = self._online, None
            online.close()

    @property
    def online_store(self) -> OnlineStore:
        """The configured online store, connected (and the embedded server started) on first use."""
        if self._online is None:
            from featurestore.online.base import open_online_store

            self._online = open_online_store(self.config)
        return self._online

    # -- definitions, plan and apply -------------------------------------------------------------

    def load(self) -> RepoContents:
        """Import and validate the repo's definition files (nothing is written)."""
        return load_repo(self.repo_path)

    def plan(self, contents: RepoContents | None = None) -> Plan:
        """The diff between the repo's files and the registry."""
        contents = contents if contents is not None else self.load()
        return make_plan(self.project, self.registry.list_objects(self.project), contents)

    def apply(self, *, allow_destructive: bool = False, contents: RepoContents | None = None) -> Plan:
        """Validate the repo and apply it atomically: every change, or (on any error) none.

        The plan is recomputed inside the registry's write lock, so two concurrent applies are
        serialised and each sees the other's result.
        """
        from featurestore.lineage import compute_lineage, on_demand_edges

        contents = contents if contents is not None else self.load()
        edges = compute_lineage(contents.feature_views, self.repo_path) + on_demand_edges(contents.on_demand_views)
        with self.registry.transaction() as tx:
            plan = make_plan(self.project, tx.list_objects(self.project), contents)
            apply_plan(tx, plan, allow_destructive=allow_destructive)
            tx.replace_lineage(self.project, edges)
        self._resolved.clear()
        self._remove_online_data(plan)
        return plan

    def _remove_online_data(self, plan: Plan) -> None:
        """Drop the online values of deleted views, views no longer online, and views whose stored
        layout changed; other views' data is left alone."""
        from featurestore.online.codec import KeyCodec

        for change in plan.changes:
            if change.kind != FeatureView.kind or change.action not in ("delete", "update"):
                continue
            new = change.definition
            if change.action == "delete" or change.destructive or (isinstance(new, FeatureView) and not new.online):
                # Join keys do not matter for the pattern: every key of the view starts with its prefix.
                self.online_store.delete_matching(KeyCodec(self.project, change.name, ()).pattern())

    # -- registry reads --------------------------------------------------------------------------

    def _objects(self, kind: str) -> list[Any]:
        return [definition_from_spec(kind, o.spec) for o in self.registry.list_objects(self.project, kind)]

    def list_entities(self) -> list[Entity]:
        return self._objects(Entity.kind)

    def list_feature_views(self) -> list[FeatureView]:
        return self._objects(FeatureView.kind)

    def list_on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._objects(OnDemandFeatureView.kind)

    def list_feature_services(self) -> list[FeatureService]:
        return self._objects(FeatureService.kind)

    def _get(self, kind: str, name: str) -> Definition:
        obj = self.registry.get_object(self.project, kind, name)
        if obj is None:
            known = [o.name for o in self.registry.list_objects(self.project, kind)]
            label = kind.replace("_", " ")
            hint = f"applied {label}s: {known}" if known else "nothing applied yet: run 'featurestore apply'"
            raise UnknownObjectError(f"unknown {label} {name!r}; {hint}")
        return definition_from_spec(kind, obj.spec)

    def get_entity(self, name: str) -> Entity:
        return self._get(Entity.kind, name)  # type: ignore[return-value]

    def get_feature_view(self, name: str) -> FeatureView:
        return self._get(FeatureView.kind, name)  # type: ignore[return-value]

    def get_feature_service(self, name: str) -> FeatureService:
        return self._get(FeatureService.kind, name)  # type: ignore[return-value]

    def describe(self, name: str, kind: str | None = None) -> dict[str, Any]:
        """Everything the registry knows of one object: spec, version, fingerprints, history."""
        kinds = [kind] if kind else ["feature_view", "on_demand_feature_view", "feature_service", "entity"]
        for k in kinds:
            obj = self.registry.get_object(self.project, k, name)
            if obj is not None:
                info: dict[str, Any] = {
                    "kind": k, "name": name, "version": obj.version,
                    "data_fingerprint": obj.data_fingerprint,
                    "metadata_fingerprint": obj.metadata_fingerprint,
                    "created_at": obj.created_at, "updated_at": obj.updated_at,
                    "spec": obj.spec,
                    "history": self.registry.object_versions(self.project, k, name),
                }
                if k == "feature_view":
                    info["offline_runs"] = [
                        {"run_id": r.run_id, "window": [r.window_start, r.window_end], "rows": r.rows,
                         "status": r.status}
                        for r in self.registry.runs(self.project, name)
                    ]
                return info
        objs = self.registry.list_objects(self.project)
        raise RetrievalError(
            f"no applied object named {name!r}; applied: {sorted(o.name for o in objs) or 'none'}"
        )

    # -- offline store ---------------------------------------------------------------------------

    def _offline(self) -> OfflineStore:
        from featurestore.offline.store import OfflineStore

        store = OfflineStore(self.config.offline_store_path, self.project, self.registry, self.repo_path)
        store.checker = self.checker
        return store

    @property
    def checker(self) -> Checker:
        """Validates batches before they are written (materialization, push) and records outcomes."""
        from featurestore.alerts import alerter_from_config
        from featurestore.validation import Checker, alert_hook

        return Checker(self.registry, self.project, self.quarantine_path,
                       alert=alert_hook(alerter_from_config(self.config), self.project))

    @property
    def quarantine_path(self) -> Path:
        """Where rows set aside by the ``quarantine`` policy are kept, one folder per view."""
        return self.config.offline_store_path / self.project / "_quarantine"

    def _duckdb(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        return con

    def materialize_offline(
        self,
        start: datetime | date | str,
        end: datetime | date | str,
        views: Sequence[str] | None = None,
        *,
        progress: Any = None,
    ) -> list[RunResult]:
        """Snapshot each view's rows with event time in ``[start, end)`` into the offline store.

        Each view is one run, visible once committed. Re-running a window supersedes the older run.
        """
        from featurestore.timeutil import to_utc

        start_utc, end_utc = to_utc(start), to_utc(end)
        targets = self._select_views(views)
        store = self._offline()
        results = []
        con = self._duckdb()
        try:
            for view in targets:
                if progress is not None:
                    progress(view.name)
                results.append(store.materialize(con, view, start_utc, end_utc))
        finally:
            con.close()
        return results

    def lineage(self, feature: str | None = None, *, source: str | None = None, column: str | None = None) -> Any:
        """Column lineage of the applied views: for ``"view:feature"`` the tree down to source
        files and columns (``LineageTree``; ``.render()`` prints it); for ``source=PATH`` the
        features that depend on it (optionally on one ``column``), through views built on views."""
        from featurestore.lineage import chain, dependents

        edges = self.registry.lineage(self.project)
        if source is not None:
            return dependents(edges, source, self.repo_path, column=column)
        if feature is None:
            raise RetrievalError("pass a feature ref 'view:feature' or source=PATH")
        return chain(edges, feature)

    def window_rows(self, view: FeatureView, start: Any, end: Any) -> tuple[pa.Table, datetime, datetime]:
        """The rows a snapshot of ``[start, end)`` would write (default: everything up to now), and
        the window as UTC datetimes. Writes nothing."""
        from featurestore.timeutil import to_naive_utc

        start_utc, end_utc = _window(start, end)
        con = self._duckdb()
        try:
            offline = self._offline()
            query = offline.snapshot_query(con, view, to_naive_utc(start_utc), to_naive_utc(end_utc))
            return con.sql(query.sql("duckdb")).to_arrow_table(), start_utc, end_utc
        finally:
            con.close()

    def validate(self, view_name: str, start: Any = None, end: Any = None) -> list[ValidationResult]:
        """Check a view's sources and rows in ``[start, end)`` against their expectations, writing
        nothing and recording nothing: the results, sources first."""
        from featurestore.validation import validate_view, visible_rows

        view = self.get_feature_view(view_name)
        sources = [(a, s) for a, s in view.inputs.items() if not isinstance(s, str) and s.expectations]
        if not view.expectations and not sources:
            raise RetrievalError(f"feature view {view_name!r} declares no expectations (nor do its sources); "
                                 f"'featurestore profile {view_name}' suggests some")
        start_utc, end_utc = _window(start, end)
        results = []
        con = self._duckdb()
        try:
            checker, compiler = self.checker, self._offline().compiler
            for alias, source in sources:
                results.append(checker.source_result(con, compiler, view, alias, source, start_utc, end_utc))
        finally:
            con.close()
        if view.expectations:
            rows, _, _ = self.window_rows(view, start_utc, end_utc)
            results.append(validate_view(view, visible_rows(view, rows), end_utc))
        return results

    def profile(self, view_name: str, start: Any = None, end: Any = None) -> str:
        """Expectations suggested by a view's rows in ``[start, end)``, as Python to review and commit."""
        from featurestore.validation import expectations_code, suggest_expectations

        view = self.get_feature_view(view_name)
        rows, start_utc, end_utc = self.window_rows(view, start, end)
        if rows.num_rows == 0:
            raise RetrievalError(f"feature view {view_name!r} has no rows between {start_utc} and {end_utc}")
        since = "" if start is None else f" from {start_utc:%Y-%m-%d %H:%M}"
        note = f"From {rows.num_rows:,} rows with event time{since} before {end_utc:%Y-%m-%d %H:%M} UTC."
        return expectations_code(view, suggest_expectations(view, rows), note)

    def offline_runs(self, view: str | None = None) -> list[Run]:
        return self.registry.runs(self.project, view)

    # -- online store ----------------------------------------------------------------------------

    def materialize(
        self,
        start: datetime | date | str,
        end: datetime | date | str,
        views: Sequence[str] | None = None,
        *,
        progress: ViewProgress | None = None,
        write_snapshot: bool = True,
    ) -> list[OnlineRunResult]:
        """Write each online view's latest row per entity with event time in ``[start, end)`` to
        the online store, newest-wins. Each view is one run in the registry. A transformed view's
        window is first snapshotted offline (``write_snapshot=False`` skips that, for a caller that
        has just written the same window with ``materialize_offline``)."""
        from featurestore.errors import MaterializationError
        from featurestore.timeutil import to_utc

        start_utc, end_utc = to_utc(start), to_utc(end)
        if end_utc <= start_utc:
            raise MaterializationError(f"materialize: end {end_utc} must be after start {start_utc}")
        starts: list[tuple[FeatureView, datetime | None]] = [(v, start_utc) for v in self._online_views(views)]
        return self._materialize_online(starts, end_utc, progress, write_snapshot=write_snapshot)

    def materialize_incremental(
        self,
        end: datetime | date | str,
        views: Sequence[str] | None = None,
        *,
        progress: ViewProgress | None = None,
    ) -> list[OnlineRunResult]:
        """Materialize each online view from where its last successful online run ended (first run:
        from ``end - ttl``, or from the beginning when the view has no ttl) up to ``end``."""
        from datetime import UTC

        from featurestore.timeutil import to_utc

        end_utc = to_utc(end)
        starts: list[tuple[FeatureView, datetime | None]] = []
        for view in self._online_views(views):
            runs = self.registry.committed_runs(self.project, view.name, kind="online")
            ends = [datetime.fromisoformat(r.window_end).replace(tzinfo=UTC) for r in runs if r.window_end]
            if ends:
                starts.append((view, min(max(ends), end_utc)))
            else:
                starts.append((view, None if view.ttl is None else end_utc - view.ttl))
        return self._materialize_online(starts, end_utc, progress)

    def _online_views(self, names: Sequence[str] | None) -> list[FeatureView]:
        targets = self._select_views(names)
        offline_only = [v.name for v in targets if not v.online]
        if names and offline_only:
            raise RetrievalError(f"feature view(s) {offline_only} have online=False: they are not materialized online")
        return [v for v in targets if v.online]

    def _materialize_online(
        self, starts: list[tuple[FeatureView, datetime | None]], end: datetime, progress: ViewProgress | None,
        *, write_snapshot: bool = True,
    ) -> list[OnlineRunResult]:
        from featurestore.materialize import materialize_views

        # A view already materialized up to ``end`` has nothing to do.
        jobs = [(view, start, end) for view, start in starts if start is None or start < end]
        if not jobs:
            return []
        online = self.online_store
        offline = self._offline()
        con = self._duckdb()
        try:
            # A transformed view's rows are computed once, into an offline snapshot of the window,
            # and the online values are then read from it: both stores hold the same rows.
            for view, start, _ in jobs:
                if view.file_source is None and write_snapshot:
                    offline.materialize(con, view, start or EARLIEST, end)
            # Rows leave in any order: the selection streams without keeping insertion order.
            con.execute("SET preserve_insertion_order = false")
            return materialize_views(con, offline, online, jobs, progress=progress)
        finally:
            con.close()

    def get_online_features(
        self, features: Features, entity_rows: Any, *, full_feature_names: bool = False,
        training_set: str | None = None,
    ) -> OnlineResponse:
        """The latest values of ``features`` for each entity in ``entity_rows`` (a list of dicts
        such as ``[{"user_id": 1}]``, or a dict of lists), with a status and event time per value.

        All views and entities are read in one round trip. A value older than its view's ttl now
        is returned as None with status ``OUTSIDE_MAX_AGE``. For a feature service with
        imputation, missing values are filled with the values learned from ``training_set``
        (default: the service's latest saved one) and get the status ``IMPUTED``.
        """
        from featurestore.on_demand import add_to_response
        from featurestore.online.retrieval import read_online

        requests = self._resolve_cached(features, full_feature_names)
        response = read_online(self.online_store, self.project, requests, entity_rows)
        response = add_to_response(response, requests.on_demand, requests.hidden)
        service = requests.service  # resolved with the requests: no registry read per call
        if service is not None and service.imputation:
            from featurestore.imputation import fill_response, targets

            found = targets(service, requests)
            response = fill_response(response, found, self.training_sets.imputation(service, training_set, cached=True))
        return response

    def _service_of(self, features: Features) -> FeatureService | None:
        if isinstance(features, FeatureService):
            return features
        if isinstance(features, str) and ":" not in features:
            return self.get_feature_service(features)
        return None

    def save_training_set(
        self,
        name: str,
        entity_df: Any,
        features: FeatureService | str,
        *,
        timestamp_column: str = "event_timestamp",
        full_feature_names: bool = False,
        overwrite: bool = False,
    ) -> pl.DataFrame:
        """Build a training set for a feature service, learn its imputation values from it, save
        both in the registry under ``name``, and return the set with missing values filled.

        Serving fills missing values of the same service with exactly these values
        (``get_online_features`` uses the latest saved set unless ``training_set=`` names one).
        """
        from featurestore.definitions.base import check_name

        check_name(name, kind="training set", location=Location("<save_training_set>"))
        service = self._service_of(features)
        if service is None:
            raise RetrievalError("save_training_set needs a feature service (its name or the object)")
        frame = self.get_historical_features(
            entity_df, service, full_feature_names=full_feature_names, timestamp_column=timestamp_column,
        )
        requests = self.resolve_features(service, full_feature_names=full_feature_names)
        views = {v.name: v for v in self.list_feature_views()}
        return self.training_sets.save(
            name, service, frame, requests, views, timestamp_column=timestamp_column,
            full_feature_names=full_feature_names, overwrite=overwrite,
        )

    def get_training_set(self, name: str) -> dict[str, Any]:
        """What the registry holds of a saved training set: service, rows, imputation values."""
        return self.training_sets.get(name)

    def list_training_sets(self) -> list[dict[str, Any]]:
        return self.training_sets.list()

    def _resolve_cached(self, features: Features, full_feature_names: bool) -> FeatureRequests:
        """``resolve_features`` without a registry read per call: serving calls this per request."""
        import time

        now = time.monotonic()
        if now - self._resolved_checked > self.REGISTRY_CHECK_SECONDS:
            latest = self.registry.latest_apply(self.project)
            if latest != self._resolved_apply:
                self._resolved.clear()
                self._resolved_apply = latest
            self._resolved_checked = now
        if isinstance(features, FeatureService):  # a service object may be unapplied: never cache it
            return self.resolve_features(features, full_feature_names=full_feature_names)
        cache_key = (features if isinstance(features, str) else tuple(features), full_feature_names)
        requests = self._resolved.get(cache_key)
        if requests is None:
            requests = self.resolve_features(features, full_feature_names=full_feature_names)
            self._resolved[cache_key] = requests
        return requests

    def push(self, view_name: str, data: Any, to: str = "online") -> int:
        """Write rows of ``view_name`` (join keys, the source's timestamp column and every feature;
        optionally its created-timestamp column) to the stores ``to`` names: ``online``,
        ``offline`` or ``online_and_offline``. Online writes are newest-wins; rows with equal event
        and created times win in push order. Returns the number of rows given.
        """
        from featurestore.push import push_rows

        if to not in PUSH_TARGETS:
            raise RetrievalError(f"push(to=...) must be one of {', '.join(PUSH_TARGETS)}, got {to!r}")
        view = self.get_feature_view(view_name)
        return push_rows(self, view, to_arrow_table(data), to)

    def _select_views(self, names: Sequence[str] | None) -> list[FeatureView]:
        views = {v.name: v for v in self.list_feature_views()}
        if not views:
            raise RetrievalError("no feature views applied yet: run 'featurestore apply' first")
        if not names:
            return list(views.values())
        unknown = [n for n in names if n not in views]
        if unknown:
            raise RetrievalError(f"unknown feature view(s) {unknown}; applied views: {sorted(views)}")
        return [views[n] for n in names]

    # -- training sets ---------------------------------------------------------------------------

    def get_historical_features(
        self,
        entity_df: Any,
        features: Features,
        *,
        full_feature_names: bool = False,
        timestamp_column: str = "event_timestamp",
        join_strategy: str = "auto",
        training_set: str | None = None,
    ) -> pl.DataFrame:
        """A point-in-time-correct training set: ``entity_df`` with the features appended.

        ``entity_df`` is a Polars, pandas or Arrow table with the views' join keys and a timestamp
        column (naive timestamps are UTC). Every row is kept, in order, duplicates included.
        ``features`` is a list of ``"view:feature"`` refs, a ``FeatureService`` or its name.
        Feature columns are named ``feature``, or ``view__feature`` with ``full_feature_names``.
        ``join_strategy`` (``auto``, ``asof`` or ``range``) only changes speed, never the answer.
        ``training_set`` fills missing values with that saved training set's imputation values
        (a feature service's features only; ``save_training_set`` learns them).
        """
        import polars as pl

        from featurestore.offline.retrieval import point_in_time_join
        from featurestore.on_demand import add_to_frame

        entity = to_arrow_table(entity_df)
        requests = self.resolve_features(features, full_feature_names=full_feature_names)
        outputs = {n for r in [*requests, *requests.on_demand] for n in r.output_names}
        clashes = sorted(outputs & set(entity.column_names))
        if clashes:
            raise RetrievalError(
                f"entity_df already has column(s) {clashes} that a requested feature would overwrite; "
                "rename them or pass full_feature_names=True"
            )
        con = self._duckdb()
        try:
            offline = self._offline()
            key_types: dict[str, pa.DataType] = {}
            for req in requests:
                schema = offline.compiler.output_schema(con, req.view)
                for key in req.view.join_keys:
                    key_types.setdefault(key, schema.field(key).type)
            table = point_in_time_join(
                con, entity, timestamp_column, requests, offline, key_types, strategy=join_strategy
            )
        finally:
            con.close()
        result = pl.from_arrow(table)
        assert isinstance(result, pl.DataFrame)
        result = add_to_frame(result, requests.on_demand, requests.hidden)
        if training_set is not None:
            from featurestore.imputation import fill_frame, targets

            service = requests.service
            if service is None:
                raise RetrievalError("training_set= fills a feature service's features: pass the service")
            fitted = self.training_sets.imputation(service, training_set)
            result = fill_frame(result, targets(service, requests), fitted)
        return result

    def resolve_features(self, features: Features, *, full_feature_names: bool = False) -> FeatureRequests:
        """Turn refs or a feature service into per-view requests, with clear errors."""
        views = {v.name: v for v in self.list_feature_views()}
        on_demand = {v.name: v for v in self.list_on_demand_feature_views()}
        return resolve_features(features, views, self.get_feature_service, full_feature_names=full_feature_names,
                                on_demand=on_demand)


def _window(start: Any, end: Any) -> tuple[datetime, datetime]:
    """A window as UTC datetimes: no start is the beginning, no end is now."""
    from featurestore.timeutil import to_utc

    return EARLIEST if start is None else to_utc(start), datetime.now(UTC) if end is None else to_utc(end)


def to_arrow_table(data: Any) -> pa.Table:
    """Accept Polars (eager or lazy), pandas or Arrow input as an Arrow table."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__
    if module.startswith("polars"):
        import polars as pl

        if isinstance(data, pl.LazyFrame):
            data = data.collect()
        if isinstance(data, pl.DataFrame):
            return data.to_arrow()
    if module.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise RetrievalError(
        f"entity_df must be a Polars, pandas or Arrow table, got {type(data).__name__}"
    )
