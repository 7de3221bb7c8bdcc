"""Entity: the thing features describe (a user, a merchant), identified by its join keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar

from featurestore.definitions.base import (
    Definition,
    Location,
    as_tuple,
    caller_location,
    check_name,
)


@dataclass(frozen=True, eq=True)
class Entity(Definition):
    """An entity with one or more join keys.

    Example::

        user = Entity("user", join_keys=["user_id"], description="A registered customer")
    """

    __hash__ = Definition.__hash__  # tags are a read-only mapping; hash the fingerprints instead

    kind: ClassVar[str] = "entity"

    name: str
    _: KW_ONLY
    join_keys: Sequence[str] | None = None
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    location: Location = field(default_factory=Location, compare=False, repr=False)

    def __post_init__(self) -> None:
        loc = self.location if self.location.file else caller_location()
        object.__setattr__(self, "location", loc)
        check_name(self.name, kind="entity", location=loc)
        obj = f"entity '{self.name}'"
        keys = as_tuple(
            self.join_keys if self.join_keys is not None else [self.name],
            field="join_keys", location=loc, obj=obj,
        )
        if not keys:
            raise self.error("needs at least one join key", field="join_keys")
        for key in keys:
            check_name(key, kind="join key", location=loc, field="join_keys", obj=obj)
        if len(set(keys)) != len(keys):
            raise self.error(f"join keys repeat a name: {list(keys)}", field="join_keys")
        object.__setattr__(self, "join_keys", keys)
        self.check_metadata(obj)

    @property
    def keys(self) -> tuple[str, ...]:
        """The join keys, as a tuple."""
        return tuple(self.join_keys or ())

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "join_keys": list(self.keys),
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], location: Location | None = None) -> Entity:
        return cls(
            spec["name"],
            join_keys=spec["join_keys"],
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags", {}),
            location=location or Location("<registry>"),
        )
