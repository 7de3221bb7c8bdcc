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
NUMERIC_TYPES = ("Int32", "Int64", "Float32", "Float64")


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

    def problem(self, ref: str, dtype: Any) -> str | None:
        """Why this strategy cannot fill the feature ``ref`` of type ``dtype`` (None: it can)."""
        name = getattr(dtype, "name", repr(dtype))
        if self.strategy in NUMERIC_ONLY and name not in NUMERIC_TYPES:
            return (f"{self.strategy} imputation of {ref!r} needs a numeric feature, it is {dtype!r}; use "
                    "Impute.mode() or Impute.constant(...)")
        if self.strategy == "constant":
            number = isinstance(self.value, int | float) and not isinstance(self.value, bool)
            fits = {"Bool": isinstance(self.value, bool), "String": isinstance(self.value, str)}.get(
                name, name in NUMERIC_TYPES and number)
            if not fits:
                return f"imputation of {ref!r}: the constant {self.value!r} does not fit a {dtype!r} feature"
        return None

    def to_spec(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "value": self.value}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Impute:
        return cls(spec["strategy"], spec.get("value"))
