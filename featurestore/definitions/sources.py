"""Data sources: where a feature view's raw rows come from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar

from featurestore.definitions.base import (
    Definition,
    Location,
    caller_location,
    check_name,
)
from featurestore.definitions.expectations import Expectation, check_expectations
from featurestore.errors import DefinitionError

FILE_FORMATS = ("parquet", "csv")


def _infer_format(path: str) -> str | None:
    lowered = path.lower().rstrip("/")
    for suffix, fmt in ((".parquet", "parquet"), (".pq", "parquet"), (".csv", "csv"), (".csv.gz", "csv")):
        if lowered.endswith(suffix):
            return fmt
    return None


@dataclass(frozen=True, eq=True)
class FileSource(Definition):
    """Rows read from a Parquet (default) or CSV file, a directory of them, or a glob.

    Relative paths are resolved against the repo root. Naive timestamps are read as UTC.

    Example::

        txns = FileSource("data/transactions/*.parquet", timestamp_field="event_timestamp",
                          created_timestamp_column="created")
    """

    __hash__ = Definition.__hash__  # tags are a read-only mapping; hash the fingerprints instead

    kind: ClassVar[str] = "source"

    path: str
    _: KW_ONLY
    timestamp_field: str = "event_timestamp"
    created_timestamp_column: str | None = None
    file_format: str | None = None
    expectations: Sequence[Expectation] = ()
    name: str = ""
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    location: Location = field(default_factory=Location, compare=False, repr=False)

    def __post_init__(self) -> None:
        loc = self.location if self.location.file else caller_location()
        object.__setattr__(self, "location", loc)
        obj = f"source {self.name or self.path!r}"
        if not isinstance(self.path, str) or not self.path.strip():
            raise DefinitionError(
                "path must be a non-empty string (a file, a directory or a glob)",
                file=loc.file, line=loc.line, obj="FileSource", field="path",
            )
        if self.name:
            check_name(self.name, kind="source", location=loc, obj=obj)
        check_name(self.timestamp_field, kind="column", location=loc, field="timestamp_field", obj=obj)
        if self.created_timestamp_column is not None:
            check_name(
                self.created_timestamp_column, kind="column", location=loc,
                field="created_timestamp_column", obj=obj,
            )
            if self.created_timestamp_column == self.timestamp_field:
                raise DefinitionError(
                    "created_timestamp_column must differ from timestamp_field",
                    file=loc.file, line=loc.line, obj=obj, field="created_timestamp_column",
                )
        fmt = self.file_format or _infer_format(self.path) or "parquet"
        if fmt not in FILE_FORMATS:
            raise DefinitionError(
                f"unknown file_format {fmt!r}; use one of {', '.join(FILE_FORMATS)}",
                file=loc.file, line=loc.line, obj=obj, field="file_format",
            )
        object.__setattr__(self, "file_format", fmt)
        object.__setattr__(self, "expectations", check_expectations(self.expectations, owner=obj, location=loc))
        self.check_metadata(obj)

    @property
    def format(self) -> str:
        return self.file_format or "parquet"

    def to_spec(self) -> dict[str, Any]:
        return {
            "type": "file",
            "path": self.path,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_column": self.created_timestamp_column,
            "file_format": self.format,
            **({"expectations": [e.to_spec() for e in self.expectations]} if self.expectations else {}),
            "name": self.name,
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], location: Location | None = None) -> FileSource:
        return cls(
            spec["path"],
            timestamp_field=spec["timestamp_field"],
            created_timestamp_column=spec.get("created_timestamp_column"),
            file_format=spec.get("file_format"),
            expectations=[Expectation.from_spec(e) for e in spec.get("expectations", [])],
            name=spec.get("name", ""),
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags", {}),
            location=location or Location("<registry>"),
        )


def source_from_spec(spec: dict[str, Any], location: Location | None = None) -> FileSource:
    """Rebuild any source from its registry spec."""
    if spec.get("type") == "file":
        return FileSource.from_spec(spec, location)
    raise ValueError(f"unknown source type {spec.get('type')!r} in registry")
