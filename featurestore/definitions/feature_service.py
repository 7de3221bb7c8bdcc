"""Feature services: a named, versioned set of features that one model consumes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from featurestore.definitions.base import (
    Definition,
    Location,
    as_tuple,
    caller_location,
    check_name,
)
from featurestore.definitions.feature_view import FeatureView, FeatureViewProjection
from featurestore.definitions.imputation import Impute
from featurestore.definitions.on_demand import OnDemandFeatureView


@dataclass(frozen=True, eq=True)
class FeatureService(Definition):
    """Features for one model: whole views or projections ``view[["a", "b"]]``.

    Example::

        fraud_v1 = FeatureService("fraud_v1", features=[user_stats, txn_stats[["amount_7d"]]])
    """

    __hash__ = Definition.__hash__  # tags are a read-only mapping; hash the fingerprints instead

    kind: ClassVar[str] = "feature_service"

    name: str
    _: KW_ONLY
    features: Sequence[FeatureView | FeatureViewProjection] = ()
    imputation: Mapping[str, Impute] = field(default_factory=dict)
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    location: Location = field(default_factory=Location, compare=False, repr=False)

    def __post_init__(self) -> None:
        loc = self.location if self.location.file else caller_location()
        object.__setattr__(self, "location", loc)
        check_name(self.name, kind="feature service", location=loc, obj="FeatureService")
        obj = f"feature service '{self.name}'"
        items = as_tuple(self.features, field="features", location=loc, obj=obj)
        if not items:
            raise self.error("needs at least one feature view or projection", field="features")
        projections: list[FeatureViewProjection] = []
        for item in items:
            if isinstance(item, FeatureView | OnDemandFeatureView):
                projections.append(FeatureViewProjection(item.name, None))
            elif isinstance(item, FeatureViewProjection):
                projections.append(item)
            else:
                raise self.error(
                    f"features must be feature views or view[[...]] projections, got {item!r}",
                    field="features",
                )
        views = [p.view_name for p in projections]
        if len(set(views)) != len(views):
            raise self.error(f"a feature view is listed twice: {views}", field="features")
        object.__setattr__(self, "features", tuple(projections))
        if not isinstance(self.imputation, Mapping):
            raise self.error("imputation must be a dict of 'view:feature' to Impute...", field="imputation")
        for ref, how in self.imputation.items():
            if not isinstance(ref, str) or ref.count(":") != 1:
                raise self.error(f"imputation key {ref!r} must be a feature ref 'view:feature'", field="imputation")
            if not isinstance(how, Impute):
                raise self.error(
                    f"imputation of {ref!r} must be Impute.mean(), .median(), .mode() or .constant(v), got {how!r}",
                    field="imputation",
                )
            if ref.split(":")[0] not in views:
                raise self.error(f"imputation of {ref!r}: the service has no view {ref.split(':')[0]!r}",
                                 field="imputation")
        object.__setattr__(self, "imputation", MappingProxyType(dict(sorted(self.imputation.items()))))
        self.check_metadata(obj)

    @property
    def projections(self) -> tuple[FeatureViewProjection, ...]:
        return tuple(p for p in self.features if isinstance(p, FeatureViewProjection))

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": [p.to_spec() for p in self.projections],
            **({"imputation": {r: i.to_spec() for r, i in self.imputation.items()}} if self.imputation else {}),
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], location: Location | None = None) -> FeatureService:
        return cls(
            spec["name"],
            features=[FeatureViewProjection.from_spec(p) for p in spec["features"]],
            imputation={r: Impute.from_spec(i) for r, i in spec.get("imputation", {}).items()},
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags", {}),
            location=location or Location("<registry>"),
        )
