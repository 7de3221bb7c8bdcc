"""On-demand features: a function of retrieved features and request-time values.

The function runs where features are retrieved (training sets and online lookups), on the same
inputs, so both give the same value. ``mode="polars"`` passes a ``polars.DataFrame`` (one row per
entity row) and expects a DataFrame, LazyFrame or list of expressions; ``mode="python"`` passes
one dict per row and expects a dict. Inputs are named by feature (and request field) name.

Example::

    txn = RequestSource("txn", schema=[Field("amount", Float64)])

    @on_demand_feature_view(sources=[user_transactions, txn], schema=[Field("amount_ratio", Float64)])
    def amount_ratio(df):
        return df.select((pl.col("amount") / pl.col("txn_avg_amount_7d")).alias("amount_ratio"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar

from featurestore.definitions.base import (
    Definition,
    Location,
    as_tuple,
    caller_location,
    check_name,
)
from featurestore.definitions.feature_view import FeatureView, FeatureViewProjection, Field
from featurestore.definitions.transformation import UserFunction
from featurestore.errors import DefinitionError

MODES = ("polars", "python")


@dataclass(frozen=True)
class RequestSource:
    """Values the caller sends with each request (entity_df columns offline, entity_rows keys online)."""

    name: str
    schema: Sequence[Field] = ()

    def __post_init__(self) -> None:
        loc = caller_location()
        check_name(self.name, kind="request source", location=loc, obj="RequestSource")
        schema = as_tuple(self.schema, field="schema", location=loc, obj=f"request source {self.name!r}")
        if not schema or not all(isinstance(f, Field) for f in schema):
            raise DefinitionError("schema must be a non-empty list of Field(name, dtype)",
                                  file=loc.file, line=loc.line, obj=f"request source {self.name!r}", field="schema")
        object.__setattr__(self, "schema", schema)

    def to_spec(self) -> dict[str, Any]:
        return {"type": "request", "name": self.name, "schema": [f.to_spec() for f in self.schema]}


@dataclass(frozen=True, eq=True)
class OnDemandFeatureView(Definition):
    """Features computed at retrieval time from other views' features and request values."""

    __hash__ = Definition.__hash__

    kind: ClassVar[str] = "on_demand_feature_view"

    name: str
    _: KW_ONLY
    sources: Sequence[FeatureView | FeatureViewProjection | RequestSource] = ()
    schema: Sequence[Field] = ()
    function: Callable[..., Any] | UserFunction | None = None
    mode: str = "polars"
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    location: Location = field(default_factory=Location, compare=False, repr=False)

    def __post_init__(self) -> None:
        loc = self.location if self.location.file else caller_location()
        object.__setattr__(self, "location", loc)
        check_name(self.name, kind="on-demand feature view", location=loc, obj="OnDemandFeatureView")
        obj = f"on-demand feature view '{self.name}'"
        if self.mode not in MODES:
            raise self.error(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}", field="mode")
        inputs: list[FeatureViewProjection | RequestSource] = []
        for src in as_tuple(self.sources, field="sources", location=loc, obj=obj):
            if isinstance(src, FeatureView):
                src = FeatureViewProjection(src.name, src.feature_names)
            if not isinstance(src, FeatureViewProjection | RequestSource):
                raise self.error(
                    f"sources must be feature views, view[[...]] projections or RequestSource(...), got {src!r}",
                    field="sources",
                )
            inputs.append(src)
        if not inputs:
            raise self.error("needs at least one source", field="sources")
        object.__setattr__(self, "sources", tuple(inputs))
        schema = as_tuple(self.schema, field="schema", location=loc, obj=obj)
        if not schema or not all(isinstance(f, Field) for f in schema):
            raise self.error("schema must be a non-empty list of Field(name, dtype): the computed features",
                             field="schema")
        object.__setattr__(self, "schema", schema)
        if self.function is None:
            raise self.error("needs a function", field="function")
        if not isinstance(self.function, UserFunction):
            object.__setattr__(self, "function", UserFunction.from_callable(
                self.function, location=loc, obj=obj, field_name="function"))
        names = [n for n in self.input_names]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise self.error(f"input name(s) {repeated} come from more than one source; project views with "
                             "view[[...]] so each input name is unique", field="sources")
        self.check_metadata(obj)

    @property
    def features(self) -> tuple[Field, ...]:
        return tuple(self.schema)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.schema)

    @property
    def view_inputs(self) -> tuple[FeatureViewProjection, ...]:
        return tuple(s for s in self.sources if isinstance(s, FeatureViewProjection))

    @property
    def request_fields(self) -> tuple[Field, ...]:
        return tuple(f for s in self.sources if isinstance(s, RequestSource) for f in s.schema)

    @property
    def input_names(self) -> tuple[str, ...]:
        return (*[f for p in self.view_inputs for f in (p.features or ())], *[f.name for f in self.request_fields])

    def __getitem__(self, features: Sequence[str]) -> FeatureViewProjection:
        features = [features] if isinstance(features, str) else list(features)
        unknown = [f for f in features if f not in self.feature_names]
        if unknown or not features:
            raise self.error(f"unknown feature(s) {unknown}; {self.name!r} has {list(self.feature_names)}")
        return FeatureViewProjection(self.name, tuple(features))

    def to_spec(self) -> dict[str, Any]:
        assert isinstance(self.function, UserFunction)
        return {
            "name": self.name,
            "sources": [s.to_spec() if isinstance(s, RequestSource) else {"type": "view", **s.to_spec()}
                        for s in self.sources],
            "schema": [f.to_spec() for f in self.schema],
            "function": {"name": self.function.name, "source": self.function.source},
            "mode": self.mode,
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    def data_spec(self) -> dict[str, Any]:
        spec = super().data_spec()
        spec["schema"] = [{"name": f["name"], "dtype": f["dtype"]} for f in spec["schema"]]
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any], location: Location | None = None) -> OnDemandFeatureView:
        sources: list[FeatureViewProjection | RequestSource] = []
        for s in spec["sources"]:
            if s["type"] == "request":
                sources.append(RequestSource(s["name"], [Field.from_spec(f) for f in s["schema"]]))
            else:
                sources.append(FeatureViewProjection.from_spec(s))
        return cls(
            spec["name"], sources=sources, schema=[Field.from_spec(f) for f in spec["schema"]],
            function=UserFunction(spec["function"]["name"], spec["function"]["source"]), mode=spec["mode"],
            description=spec.get("description", ""), owner=spec.get("owner", ""), tags=spec.get("tags", {}),
            location=location or Location("<registry>"),
        )


def on_demand_feature_view(
    *, sources: Sequence[FeatureView | FeatureViewProjection | RequestSource], schema: Sequence[Field],
    mode: str = "polars", name: str | None = None, description: str = "", owner: str = "",
    tags: Mapping[str, str] | None = None,
) -> Callable[[Callable[..., Any]], OnDemandFeatureView]:
    """Decorator form: the function's name is the view's name unless ``name`` is given."""
    loc = caller_location()

    def wrap(fn: Callable[..., Any]) -> OnDemandFeatureView:
        return OnDemandFeatureView(
            name or fn.__name__, sources=sources, schema=schema, function=fn, mode=mode,
            description=description, owner=owner, tags=tags or {}, location=loc,
        )

    return wrap
