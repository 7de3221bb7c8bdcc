"""Feature views: typed features of one or more entities, read from a source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import timedelta
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
from featurestore.definitions.sources import FileSource, source_from_spec
from featurestore.errors import DefinitionError
from featurestore.types import DType, parse_dtype


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

    Example::

        user_stats = FeatureView(
            "user_stats", entities=[user], source=FileSource("data/users.parquet"),
            schema=[Field("age", Int64), Field("country", String)], ttl=timedelta(days=30),
        )
    """

    __hash__ = Definition.__hash__  # tags are a read-only mapping; hash the fingerprints instead

    kind: ClassVar[str] = "feature_view"

    name: str
    _: KW_ONLY
    entities: Sequence[Entity | str] = ()
    source: FileSource | None = None
    schema: Sequence[Field] = ()
    ttl: timedelta | None = None
    online: bool = True
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

        if not isinstance(self.source, FileSource):
            raise self.error(
                f"source must be a data source such as FileSource(...), got {self.source!r}", field="source"
            )

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
        reserved = {self.source.timestamp_field, self.source.created_timestamp_column} - {None}
        for f in schema:
            if f.name in reserved:
                raise self.error(
                    f"{f.name!r} is the source's timestamp column, not a feature; remove it from schema",
                    field="schema",
                )

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
        check_text(self.description, field="description", location=loc, obj=obj)
        check_text(self.owner, field="owner", location=loc, obj=obj)
        object.__setattr__(self, "tags", freeze_tags(self.tags, location=loc, obj=obj))

    # -- derived views of the definition ---------------------------------------------------------

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
    def features(self) -> tuple[Field, ...]:
        """Schema fields that are features. A field named like a join key only declares the key's
        type (as Feast repos do) and is not a feature."""
        keys = set(self.join_keys)
        return tuple(f for f in self.schema if f.name not in keys)

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
        assert self.source is not None
        return {
            "name": self.name,
            "entities": [
                {"name": e.name, "join_keys": list(e.keys)} if isinstance(e, Entity) else {"name": e}
                for e in self.entities
            ],
            "source": self.source.to_spec(),
            "schema": [f.to_spec() for f in self.schema],
            "ttl_seconds": None if self.ttl is None else self.ttl.total_seconds(),
            "online": self.online,
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    def data_spec(self) -> dict[str, Any]:
        spec = super().data_spec()
        # Descriptions of fields and of the source are metadata too.
        spec["schema"] = [{"name": f["name"], "dtype": f["dtype"]} for f in spec["schema"]]
        spec["source"] = {k: v for k, v in spec["source"].items() if k not in ("description", "owner", "tags")}
        return spec

    def metadata_spec(self) -> dict[str, Any]:
        spec = self.to_spec()
        meta = super().metadata_spec()
        # Only described fields count, so adding or dropping a bare field is not a metadata change.
        meta["schema"] = {
            f["name"]: {"description": f["description"], "tags": f["tags"]}
            for f in spec["schema"] if f["description"] or f["tags"]
        }
        meta["source"] = {k: spec["source"][k] for k in ("description", "owner", "tags")}
        return meta

    def storage_spec(self) -> dict[str, Any]:
        """What decides the rows stored for this view; a change here is destructive."""
        spec = self.data_spec()
        return {k: spec[k] for k in ("entities", "source", "schema")}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], location: Location | None = None) -> FeatureView:
        ttl = spec.get("ttl_seconds")
        return cls(
            spec["name"],
            entities=[
                Entity(e["name"], join_keys=e["join_keys"], location=location or Location("<registry>"))
                if "join_keys" in e else e["name"]
                for e in spec["entities"]
            ],
            source=source_from_spec(spec["source"], location),
            schema=[Field.from_spec(f) for f in spec["schema"]],
            ttl=None if ttl is None else timedelta(seconds=ttl),
            online=spec.get("online", True),
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags", {}),
            location=location or Location("<registry>"),
        )
