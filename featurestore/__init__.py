"""featurestore: declarative features, point-in-time-correct training sets, offline and online stores.

Definitions are importable from here, as in Feast::

    from featurestore import Entity, FeatureView, Field, FileSource, Float64, Int64

``FeatureStore`` is imported lazily so that ``import featurestore`` stays fast (no DuckDB, Arrow or
Polars until a store is used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featurestore.definitions import (
    Aggregation,
    Entity,
    Expect,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    FileSource,
    Impute,
    OnDemandFeatureView,
    RequestSource,
    on_demand_feature_view,
)
from featurestore.errors import FeatureStoreError
from featurestore.types import (
    Array,
    Bool,
    Bytes,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)

if TYPE_CHECKING:
    from featurestore.remote.client import Client
    from featurestore.store import FeatureStore

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "FeatureStore":
        from featurestore.store import FeatureStore

        return FeatureStore
    if name == "Client":  # needs the grpc extra
        from featurestore.remote.client import Client

        return Client
    raise AttributeError(f"module 'featurestore' has no attribute {name!r}")


__all__ = [
    "Aggregation",
    "Array",
    "Bool",
    "Bytes",
    "Client",
    "Entity",
    "Expect",
    "FeatureService",
    "FeatureStore",
    "FeatureStoreError",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FileSource",
    "Float32",
    "Float64",
    "Impute",
    "Int32",
    "Int64",
    "OnDemandFeatureView",
    "RequestSource",
    "String",
    "UnixTimestamp",
    "on_demand_feature_view",
]
