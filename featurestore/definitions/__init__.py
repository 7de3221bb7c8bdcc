"""Declarative feature definitions. Plain Python: no backend is imported here."""

from __future__ import annotations

from typing import Any

from featurestore.definitions.base import Definition, Location
from featurestore.definitions.entity import Entity
from featurestore.definitions.expectations import Expect, Expectation
from featurestore.definitions.feature_service import FeatureService
from featurestore.definitions.feature_view import FeatureView, FeatureViewProjection, Field
from featurestore.definitions.imputation import Impute
from featurestore.definitions.on_demand import OnDemandFeatureView, RequestSource, on_demand_feature_view
from featurestore.definitions.sources import FileSource
from featurestore.definitions.transformation import Aggregation

DEFINITION_CLASSES: dict[str, type[Definition]] = {
    Entity.kind: Entity,
    FeatureView.kind: FeatureView,
    OnDemandFeatureView.kind: OnDemandFeatureView,
    FeatureService.kind: FeatureService,
}


def definition_from_spec(kind: str, spec: dict[str, Any], location: Location | None = None) -> Definition:
    """Rebuild a definition stored in the registry."""
    cls = DEFINITION_CLASSES[kind]
    return cls.from_spec(spec, location)  # type: ignore[attr-defined]


__all__ = [
    "DEFINITION_CLASSES",
    "Aggregation",
    "Definition",
    "Entity",
    "Expect",
    "Expectation",
    "FeatureService",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FileSource",
    "Impute",
    "Location",
    "OnDemandFeatureView",
    "RequestSource",
    "definition_from_spec",
    "on_demand_feature_view",
]
