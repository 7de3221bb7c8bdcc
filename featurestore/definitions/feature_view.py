"""Feature views: typed features of one or more entities, read from a source."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, ClassVar

from featurestore.definitions.base import (
    Definition,
    Location,
    as_tuple,
    caller_location,
    check_name,
    check_text,
    freeze_tags,
)
from featurestore.definitions.entity import Entity
from featurestore.definitions.expectations import POLICIES, Expectation, check_expectations
from featurestore.definitions.sources import FileSource, source_from_spec
from featurestore.definitions.transformation import Aggregation, SqlTransformation, UserFunction
from featurestore.errors import DefinitionError
from featurestore.types import DType, parse_dtype

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True, eq=True)
class Field:
    """A named, typed column of a feature view. Example: ``Field("age", Int64)``."""

    name: str
    dtype: DType
    _: KW_ONLY
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.name, self.dtype, self.description, tuple(self.tags.items())))

    def __post_init__(self) -> None:
        loc = caller_location()
        check_name(self.name, kind="field", location=loc, obj="Field")
        if not isinstance(self.dtype, DType):
            raise DefinitionError(
                f"dtype must be a feature type such as Int64 or Array(Float32), got {self.dtype!r}",
                file=loc.file, line=loc.line, obj=f"Field '{self.name}'", field="dtype",
            )
        check_text(self.description, field="description", location=loc, obj=f"Field '{self.name}'")
        object.__setattr__(self, "tags", freeze_tags(self.tags, location=loc, obj=f"Field '{self.name}'"))

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": repr(self.dtype), "description": self.description,
                "tags": dict(self.tags)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Field:
        return cls(spec["name"], parse_dtype(spec["dtype"]), description=spec.get("description", ""),
                   tags=spec.get("tags", {}))


@dataclass(frozen=True)
class FeatureViewProjection:
    """A view with a subset of its features, written ``view[["a", "b"]]`` in a feature service."""

    view_name: str
    features: tuple[str, ...] | None  # None: all of the view's features

    def to_spec(self) -> dict[str, Any]:
        return {"view": self.view_name, "features": None if self.features is None else list(self.features)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FeatureViewProjection:
        feats = spec.get("features")
        return cls(spec["view"], None if feats is None else tuple(feats))


@dataclass(frozen=True, eq=True)
class FeatureView(Definition):
    """Features of one or more entities, read from a source, valid for ``ttl`` after their event.

    ``ttl`` bounds how old a value may be at retrieval time: a training row at ``t`` sees the
    latest value with event time in ``[t - ttl, t]``; ``None`` means no bound. Online serving
    applies the same rule.

    A view reads one ``source`` (a ``FileSource`` or another feature view), or several named
    ``sources``, optionally through a transformation: ``sql`` (a DuckDB ``SELECT`` naming the
    sources as tables; a single source is the table ``source``) or ``transform`` (a Polars
    function from LazyFrame to LazyFrame, or to a list of expressions added as columns).
    ``aggregations`` turn the rows into windowed aggregates (then ``schema`` declares the
    aggregated columns and the features are the aggregations). ``forward_fill`` names features
    whose null values take the entity's previous non-null value when that one is at most ``ttl``
    older than the row (any age without a ttl), the same offline and online. Pushed rows are
    stored as given.

    Example::

        user_stats = FeatureView(
            "user_stats", entities=[user], source=FileSource("data/users.parquet"),
            schema=[Field("age", Int64), Field("country", String)], ttl=timedelta(days=30),
        )
        spend = FeatureView(
            "spend", entities=[user], source=txns, schema=[Field("amount", Float64)],
            aggregations=[Aggregation("amount", "sum", timedelta(days=7))],
        )
    """

    __hash__ = Definition.__hash__  # tags are a read-only mapping; hash the fingerprints instead

    kind: ClassVar[str] = "feature_view"

    name: str
    _: KW_ONLY
    entities: Sequence[Entity | str] = ()
    source: FileSource | FeatureView | str | None = None
    schema: Sequence[Field] = ()
    ttl: timedelta | None = None
    online: bool = True
    sources: Mapping[str, FileSource | FeatureView | str] = field(default_factory=dict)
    sql: str | None = None
    transform: Callable[..., Any] | UserFunction | None = None
    aggregations: Sequence[Aggregation] = ()
    forward_fill: Sequence[str] = ()
    expectations: Sequence[Expectation] = ()
    on_failure: str = "fail"
    drift_thresholds: Mapping[str, Any] = field(default_factory=dict)
    schedule: str | timedelta | None = None
    timestamp_field: str | None = None
    created_timestamp_column: str | None = None
    # Set by the repo loader: storage fingerprints of the views this view reads, so a change
    # upstream changes this view's stored data too.
    upstream_fingerprints: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    location: Location = field(default_factory=Location, compare=False, repr=False)

    def __post_init__(self) -> None:
        loc = self.location if self.location.file else caller_location()
        object.__setattr__(self, "location", loc)
        check_name(self.name, kind="feature view", location=loc, obj="FeatureView")
        obj = f"feature view '{self.name}'"

        entities = as_tuple(self.entities, field="entities", location=loc, obj=obj)
        if not entities:
            raise self.error("needs at least one entity", field="entities")
        for ent in entities:
            if not isinstance(ent, Entity | str):
                raise self.error(f"entities must be Entity objects or names, got {ent!r}", field="entities")
        object.__setattr__(self, "entities", entities)
        names = self.entity_names
        if len(set(names)) != len(names):
            raise self.error(f"an entity is listed twice: {list(names)}", field="entities")

        self._check_inputs()
        self._check_transformation(loc)

        schema = as_tuple(self.schema, field="schema", location=loc, obj=obj)
        for f in schema:
            if not isinstance(f, Field):
                raise self.error(f"schema must be a list of Field(name, dtype), got {f!r}", field="schema")
        seen: set[str] = set()
        for f in schema:
            if f.name in seen:
                raise self.error(f"field {f.name!r} is declared twice", field="schema")
            seen.add(f.name)
        object.__setattr__(self, "schema", schema)
        reserved = {self.timestamp_column, self.created_column} - {None}
        for f in schema:
            if f.name in reserved:
                raise self.error(
                    f"{f.name!r} is the source's timestamp column, not a feature; remove it from schema",
                    field="schema",
                )
        self._check_aggregations(loc)
        fill = as_tuple(self.forward_fill, field="forward_fill", location=loc, obj=obj)
        unknown = [f for f in fill if f not in self.feature_names]
        if unknown or len(set(fill)) != len(fill):
            raise self.error(
                f"forward_fill lists {list(fill)}: each must be a feature of the view, once; features: "
                f"{list(self.feature_names)}", field="forward_fill",
            )
        if fill and self.aggregations:
            raise self.error("forward_fill is for views of values, not aggregations", field="forward_fill")
        object.__setattr__(self, "forward_fill", fill)
        object.__setattr__(self, "expectations", check_expectations(self.expectations, owner=obj, location=loc))
        if self.drift_thresholds:
            from featurestore.monitoring.drift import Threshold

            for name, threshold in self.drift_thresholds.items():
                if name not in self.feature_names or not isinstance(threshold, Threshold):
                    raise self.error(f"drift_thresholds maps features to Threshold(...); {name!r}: {threshold!r} "
                                     f"(features: {list(self.feature_names)})", field="drift_thresholds")
        object.__setattr__(self, "drift_thresholds", MappingProxyType(dict(self.drift_thresholds)))
        if self.schedule is not None:
            problem = schedule_problem(self.schedule)
            if problem:
                raise self.error(problem, field="schedule")
        if self.on_failure not in POLICIES:
            raise self.error(f"on_failure must be one of {', '.join(POLICIES)}, got {self.on_failure!r}",
                             field="on_failure")

        if self.ttl is not None:
            if not isinstance(self.ttl, timedelta):
                raise self.error(f"ttl must be a datetime.timedelta or None (no limit), got {self.ttl!r}", field="ttl")
            if self.ttl <= timedelta(0):
                raise self.error(
                    f"ttl must be positive, got {self.ttl}; use ttl=None for values that never expire",
                    field="ttl",
                )
        if not isinstance(self.online, bool):
            raise self.error(f"online must be True or False, got {self.online!r}", field="online")
        self.check_metadata(obj)

    def _check_inputs(self) -> None:
        if self.sources and self.source is not None:
            raise self.error("pass either source=... or sources={...}, not both", field="sources")
        if self.sources:
            if not isinstance(self.sources, Mapping):
                raise self.error("sources must be a dict of table name to source or feature view", field="sources")
            frozen: dict[str, FileSource | str] = {}
            for alias, src in self.sources.items():
                check_name(alias, kind="table", location=self.location, field="sources",
                           obj=f"feature view '{self.name}'")
                frozen[alias] = self._input(src, "sources")
            object.__setattr__(self, "sources", MappingProxyType(frozen))
            return
        if self.source is None:
            raise self.error(
                "source must be a data source such as FileSource(...), got None; or read another feature view",
                field="source",
            )
        object.__setattr__(self, "source", self._input(self.source, "source"))
        object.__setattr__(self, "sources", MappingProxyType({}))

    def _input(self, src: object, field_name: str) -> FileSource | str:
        if isinstance(src, FileSource):
            return src
        if isinstance(src, FeatureView):
            if src.name == self.name:
                raise self.error("a feature view cannot read itself", field=field_name)
            return src.name
        if isinstance(src, str) and _NAME.fullmatch(src):
            return src  # another view's name
        raise self.error(
            f"{field_name} must be a data source such as FileSource(...), got {src!r}; or a feature view "
            "(the object or its name)",
            field=field_name,
        )

    def _check_transformation(self, loc: Location) -> None:
        if self.sql is not None and self.transform is not None:
            raise self.error("pass either sql=... or transform=..., not both", field="sql")
        if self.sql is not None:
            if not isinstance(self.sql, str) or not self.sql.strip():
                raise self.error("sql must be a non-empty SELECT statement", field="sql")
            SqlTransformation(self.sql, loc).tree  # noqa: B018 - parse now: errors at load time
        if self.transform is not None and not isinstance(self.transform, UserFunction):
            object.__setattr__(self, "transform", UserFunction.from_callable(
                self.transform, location=loc, obj=f"feature view '{self.name}'", field_name="transform",
            ))
        if len(self.inputs) > 1 and self.transformation is None:
            raise self.error(
                f"reads {len(self.inputs)} sources {list(self.sources)}: add sql=... (or transform=...) "
                "that combines them", field="sources",
            )
        for name in ("timestamp_field", "created_timestamp_column"):
            value = getattr(self, name)
            if value is None:
                continue
            if self.file_source is not None:
                raise self.error(
                    f"{name} is for views with a transformation or reading another view; this view uses "
                    "its source's timestamp columns", field=name,
                )
            check_name(value, kind="column", location=loc, field=name, obj=f"feature view '{self.name}'")

    def _check_aggregations(self, loc: Location) -> None:
        aggs = as_tuple(self.aggregations, field="aggregations", location=loc, obj=f"feature view '{self.name}'")
        for agg in aggs:
            if not isinstance(agg, Aggregation):
                raise self.error(f"aggregations must be Aggregation(...) objects, got {agg!r}", field="aggregations")
        object.__setattr__(self, "aggregations", aggs)
        if not aggs:
            return
        declared = {f.name for f in self.schema}
        for agg in aggs:
            if agg.column not in declared:
                raise self.error(
                    f"aggregation {agg.name!r} reads column {agg.column!r}, which is not in schema; declare "
                    f"its type, e.g. Field({agg.column!r}, Float64)", field="aggregations",
                )
        names = [a.name for a in aggs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise self.error(f"aggregation name(s) {repeated} repeat; give one a name=...", field="aggregations")
        clash = sorted(set(names) & declared)
        if clash:
            raise self.error(f"aggregation name(s) {clash} are also schema fields", field="aggregations")

    # -- derived views of the definition ---------------------------------------------------------

    @property
    def inputs(self) -> dict[str, FileSource | str]:
        """Input tables by the name the transformation uses: file sources, or names of views."""
        if self.sources:
            return dict(self.sources)  # type: ignore[arg-type]
        assert isinstance(self.source, FileSource | str)
        return {"source": self.source}

    @property
    def transformation(self) -> SqlTransformation | UserFunction | None:
        if self.sql is not None:
            return SqlTransformation(self.sql, self.location)
        return self.transform if isinstance(self.transform, UserFunction) else None

    @property
    def file_source(self) -> FileSource | None:
        """The source, when the view's rows are exactly one file source's rows."""
        if self.transformation is None and isinstance(self.source, FileSource):
            return self.source
        return None

    @property
    def timestamp_column(self) -> str:
        """The event-time column of the view's rows: ``timestamp_field``, else the first file
        source's, else ``event_timestamp``."""
        if self.timestamp_field:
            return self.timestamp_field
        first = next((s for s in self.inputs.values() if isinstance(s, FileSource)), None)
        return first.timestamp_field if first is not None else "event_timestamp"

    @property
    def created_column(self) -> str | None:
        if self.created_timestamp_column or self.transformation is not None:
            return self.created_timestamp_column
        return self.source.created_timestamp_column if isinstance(self.source, FileSource) else None

    @property
    def upstream_views(self) -> tuple[str, ...]:
        """Names of the feature views this view reads."""
        return tuple(src for src in self.inputs.values() if isinstance(src, str))

    @property
    def entity_names(self) -> tuple[str, ...]:
        return tuple(e.name if isinstance(e, Entity) else e for e in self.entities)

    @property
    def entity_objects(self) -> tuple[Entity, ...]:
        """Entities passed as objects (collected by the repo loader even if not module-level)."""
        return tuple(e for e in self.entities if isinstance(e, Entity))

    @property
    def resolved(self) -> bool:
        """True when every entity is an Entity object, so the join keys are known."""
        return len(self.entity_objects) == len(self.entities)

    @property
    def join_keys(self) -> tuple[str, ...]:
        """All join keys of the view's entities, in order (needs resolved entities)."""
        return tuple(k for e in self.entity_objects for k in e.keys)

    @property
    def input_fields(self) -> tuple[Field, ...]:
        """Schema fields that are not join keys: the features, or for an aggregating view the
        columns it aggregates."""
        keys = set(self.join_keys)
        return tuple(f for f in self.schema if f.name not in keys)

    @property
    def features(self) -> tuple[Field, ...]:
        """The view's features. A schema field named like a join key only declares the key's type
        (as Feast repos do) and is not a feature. An aggregating view's features are its
        aggregations."""
        if self.aggregations:
            types = {f.name: f.dtype for f in self.schema}
            return tuple(Field(a.name, a.output_dtype(types[a.column])) for a in self.aggregations)
        return self.input_fields

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def __getitem__(self, features: Sequence[str]) -> FeatureViewProjection:
        """``view[["a", "b"]]``: a projection for a feature service."""
        if isinstance(features, str):
            features = [features]
        features = list(features)
        if not features:
            raise self.error("a projection view[[...]] needs at least one feature name")
        repeated = sorted({f for f in features if features.count(f) > 1})
        if repeated:
            raise self.error(f"a projection lists feature(s) {repeated} more than once")
        unknown = [f for f in features if f not in self.feature_names]
        if unknown:
            raise DefinitionError(
                f"unknown feature(s) {unknown}; {self.name!r} has {list(self.feature_names)}",
                file=self.location.file, line=self.location.line, obj=f"feature view '{self.name}'",
            )
        return FeatureViewProjection(self.name, tuple(features))

    # -- registry spec ---------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": self.name,
            "entities": [
                {"name": e.name, "join_keys": list(e.keys)} if isinstance(e, Entity) else {"name": e}
                for e in self.entities
            ],
        }
        if self.sources:
            spec["sources"] = {alias: _input_spec(src) for alias, src in self.inputs.items()}
        else:
            spec["source"] = _input_spec(self.inputs["source"])
        spec["schema"] = [f.to_spec() for f in self.schema]
        spec["ttl_seconds"] = None if self.ttl is None else self.ttl.total_seconds()
        spec["online"] = self.online
        # New keys only when used, so the fingerprints of plain views never change.
        if self.sql is not None:
            spec["transformation"] = {"type": "sql", "sql": self.sql}
        elif isinstance(self.transform, UserFunction):
            spec["transformation"] = {"type": "polars", "name": self.transform.name, "source": self.transform.source}
        if self.aggregations:
            spec["aggregations"] = [a.to_spec() for a in self.aggregations]
        if self.forward_fill:
            spec["forward_fill"] = list(self.forward_fill)
        if self.expectations:
            spec["expectations"] = [e.to_spec() for e in self.expectations]
        if self.expectations or self.on_failure != "fail":  # the policy also applies to the sources'
            spec["on_failure"] = self.on_failure
        if self.drift_thresholds:
            spec["drift_thresholds"] = {n: dataclasses.asdict(t) for n, t in sorted(self.drift_thresholds.items())}
        if self.schedule is not None:
            spec["schedule"] = (self.schedule if isinstance(self.schedule, str)
                                else {"seconds": self.schedule.total_seconds()})
        for key in ("timestamp_field", "created_timestamp_column"):
            if getattr(self, key) is not None:
                spec[key] = getattr(self, key)
        if self.upstream_fingerprints:
            spec["upstream_fingerprints"] = dict(sorted(self.upstream_fingerprints.items()))
        spec.update({"description": self.description, "owner": self.owner, "tags": dict(self.tags)})
        return spec

    def data_spec(self) -> dict[str, Any]:
        spec = super().data_spec()
        # Descriptions of fields and of the sources are metadata too.
        spec["schema"] = [{"name": f["name"], "dtype": f["dtype"]} for f in spec["schema"]]
        if "source" in spec:
            spec["source"] = _data_only(spec["source"])
        if "sources" in spec:
            spec["sources"] = {alias: _data_only(s) for alias, s in spec["sources"].items()}
        if self.sql is not None:
            # Formatting and comments of the query are not data.
            spec["transformation"] = {"type": "sql", "sql": SqlTransformation(self.sql, self.location).normalized}
        spec.pop("drift_thresholds", None)  # how drift is judged describes the data, it does not change it
        spec.pop("schedule", None)  # when it runs is not what it computes
        return spec

    def metadata_spec(self) -> dict[str, Any]:
        spec = self.to_spec()
        meta = super().metadata_spec()
        # Only described fields count, so adding or dropping a bare field is not a metadata change.
        meta["schema"] = {
            f["name"]: {"description": f["description"], "tags": f["tags"]}
            for f in spec["schema"] if f["description"] or f["tags"]
        }
        if "source" in spec and "path" in spec["source"]:
            meta["source"] = {k: spec["source"][k] for k in ("description", "owner", "tags")}
        if "drift_thresholds" in spec:
            meta["drift_thresholds"] = spec["drift_thresholds"]
        if "schedule" in spec:
            meta["schedule"] = spec["schedule"]
        return meta

    def storage_spec(self) -> dict[str, Any]:
        """What decides the rows stored for this view; a change here is destructive."""
        spec = self.data_spec()
        keys = ("entities", "source", "sources", "schema", "transformation", "aggregations",
                "timestamp_field", "created_timestamp_column", "upstream_fingerprints", "forward_fill")
        stored = {k: spec[k] for k in keys if k in spec}
        # What a source expects of its rows decides what is written next, not what is stored.
        for name in ("source", "sources"):
            if name in stored:
                stored[name] = _without_expectations(stored[name])
        if self.forward_fill:  # the ttl bounds which values fill, so it decides the stored rows
            stored["ttl_seconds"] = spec["ttl_seconds"]
        return stored

    @classmethod
    def from_spec(cls, spec: dict[str, Any], location: Location | None = None) -> FeatureView:
        ttl = spec.get("ttl_seconds")
        loc = location or Location("<registry>")
        transformation = spec.get("transformation") or {}
        return cls(
            spec["name"],
            entities=[
                Entity(e["name"], join_keys=e["join_keys"], location=loc) if "join_keys" in e else e["name"]
                for e in spec["entities"]
            ],
            source=_input_from_spec(spec["source"], loc) if "source" in spec else None,
            sources={a: _input_from_spec(s, loc) for a, s in spec.get("sources", {}).items()},
            schema=[Field.from_spec(f) for f in spec["schema"]],
            ttl=None if ttl is None else timedelta(seconds=ttl),
            online=spec.get("online", True),
            sql=transformation.get("sql") if transformation.get("type") == "sql" else None,
            transform=UserFunction(transformation["name"], transformation["source"])
            if transformation.get("type") == "polars" else None,
            aggregations=[Aggregation.from_spec(a, loc) for a in spec.get("aggregations", [])],
            forward_fill=spec.get("forward_fill", ()),
            expectations=[Expectation.from_spec(e) for e in spec.get("expectations", [])],
            on_failure=spec.get("on_failure", "fail"),
            drift_thresholds=_thresholds(spec.get("drift_thresholds", {})),
            schedule=_schedule(spec.get("schedule")),
            timestamp_field=spec.get("timestamp_field"),
            created_timestamp_column=spec.get("created_timestamp_column"),
            upstream_fingerprints=spec.get("upstream_fingerprints", {}),
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags", {}),
            location=loc,
        )


PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?]+$")


def schedule_problem(schedule: object) -> str | None:
    """Why ``schedule`` is not a valid schedule (None: it is). A cron preset, a five-field cron
    expression, or a positive timedelta of whole seconds."""
    if isinstance(schedule, timedelta):
        if schedule <= timedelta(0) or schedule % timedelta(seconds=1):
            return f"a timedelta schedule must be positive whole seconds, got {schedule}"
        return None
    if not isinstance(schedule, str):
        return f"schedule must be a cron string such as '@daily' or '0 * * * *', or a timedelta; got {schedule!r}"
    if schedule.startswith("@"):
        return None if schedule in PRESETS else f"unknown schedule preset {schedule!r}; use one of {', '.join(PRESETS)}"
    fields = schedule.split()
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
        return f"schedule {schedule!r} is not a cron expression of five fields (minute hour day month weekday)"
    return None


def _schedule(spec: Any) -> str | timedelta | None:
    if spec is None or isinstance(spec, str):
        return spec
    return timedelta(seconds=spec["seconds"])


def _thresholds(spec: dict[str, Any]) -> dict[str, Any]:
    if not spec:
        return {}
    from featurestore.monitoring.drift import Threshold

    return {name: Threshold(**values) for name, values in spec.items()}


def _input_spec(src: FileSource | str) -> dict[str, Any]:
    return src.to_spec() if isinstance(src, FileSource) else {"type": "feature_view", "name": src}


def _input_from_spec(spec: dict[str, Any], location: Location) -> FileSource | str:
    return spec["name"] if spec.get("type") == "feature_view" else source_from_spec(spec, location)


def _without_expectations(spec: dict[str, Any]) -> dict[str, Any]:
    if "expectations" in spec:
        return {k: v for k, v in spec.items() if k not in ("expectations", "on_failure")}
    if spec and all(isinstance(v, dict) for v in spec.values()) and "type" not in spec:  # sources by name
        return {alias: _without_expectations(s) for alias, s in spec.items()}
    return spec


def _data_only(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("description", "owner", "tags")}
