"""Imputation declared on a feature service: how a model fills missing feature values.

Strategies ``mean``, ``median`` and ``mode`` learn one value per feature from a saved training
set (``FeatureStore.save_training_set``); the registry keeps it with that training set, and
serving fills missing values with exactly that value. ``constant`` needs no statistics.
(Forward fill is declared on the feature view: ``FeatureView(..., forward_fill=[...])``.)

Example::

    FeatureService("fraud_v1", features=[profile, txns],
                   imputation={"profile:credit_score": Impute.median(), "profile:country": Impute.constant("??")})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featurestore.errors import DefinitionError

STRATEGIES = ("constant", "mean", "median", "mode")
NUMERIC_ONLY = ("mean", "median")


@dataclass(frozen=True)
class Impute:
    """A fill strategy for one feature's missing values."""

    strategy: str
    value: Any = None  # the constant

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise DefinitionError(f"unknown imputation strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        if self.strategy == "constant" and self.value is None:
            raise DefinitionError("Impute.constant(value) needs a value that is not None")
        if self.value is not None and not isinstance(self.value, bool | int | float | str):
            raise DefinitionError(f"a constant must be a bool, number or string, got {type(self.value).__name__}")

    @classmethod
    def constant(cls, value: Any) -> Impute:
        return cls("constant", value)

    @classmethod
    def mean(cls) -> Impute:
        return cls("mean")

    @classmethod
    def median(cls) -> Impute:
        return cls("median")

    @classmethod
    def mode(cls) -> Impute:
        """The most frequent value (the smallest of equally frequent ones, so it is deterministic)."""
        return cls("mode")

    def to_spec(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "value": self.value}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Impute:
        return cls(spec["strategy"], spec.get("value"))
