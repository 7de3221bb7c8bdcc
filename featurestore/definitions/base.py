"""What every definition shares: where it was written, a safe name, a spec and two fingerprints.

A definition's *spec* is a plain JSON-able dict: the registry stores it and rebuilds the object from
it. Its *data fingerprint* hashes what changes results; its *metadata fingerprint* hashes what only
describes it (description, owner, tags), so editing a description is never a data change.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from featurestore.errors import DefinitionError

# Names end up in SQL identifiers, file paths and Redis keys: keep them to a portable subset.
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

METADATA_KEYS = ("description", "owner", "tags")


@dataclass(frozen=True, slots=True)
class Location:
    """The file and line of user code that constructed a definition."""

    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if not self.file:
            return "<unknown>"
        return f"{self.file}:{self.line}" if self.line else self.file


def caller_location() -> Location:
    """The first stack frame outside this package: the line in the repo that built the object."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        # Skip this package and generated code (dataclass __init__ runs from "<string>").
        code_file = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIR + os.sep) and not code_file.startswith("<"):
            return Location(_display_path(filename), frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
    return Location()


def _display_path(path: str) -> str:
    """Relative to the working directory when the file is inside it, else absolute: the same file
    is never shown as ``../x`` from one place and ``/abs/x`` from another."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel == ".." or rel.startswith(".." + os.sep) else rel


def check_name(name: object, *, kind: str, location: Location, field: str = "name", obj: str | None = None) -> str:
    """Validate a user-given name so it is safe as a SQL identifier, a path part and a Redis key."""
    if not isinstance(name, str):
        raise DefinitionError(
            f"{field} must be a string, got {type(name).__name__}",
            file=location.file, line=location.line, obj=obj or kind, field=field,
        )
    if not _NAME_RE.fullmatch(name):
        raise DefinitionError(
            f"{name!r} is not a valid {kind} name: use letters, digits and underscores, starting "
            "with a letter or underscore, at most 63 characters",
            file=location.file, line=location.line, obj=obj or kind, field=field,
        )
    if name.startswith("__"):
        raise DefinitionError(
            f"{name!r}: names starting with '__' are reserved for internal columns",
            file=location.file, line=location.line, obj=obj or kind, field=field,
        )
    return name


def check_text(value: object, *, field: str, location: Location, obj: str) -> str:
    if not isinstance(value, str):
        raise DefinitionError(
            f"must be a string, got {type(value).__name__}",
            file=location.file, line=location.line, obj=obj, field=field,
        )
    return value


def freeze_tags(tags: object, *, location: Location, obj: str) -> Mapping[str, str]:
    """Tags are a read-only str -> str mapping."""
    if tags is None:
        return MappingProxyType({})
    if not isinstance(tags, Mapping):
        raise DefinitionError(
            f"must be a dict of str to str, got {type(tags).__name__}",
            file=location.file, line=location.line, obj=obj, field="tags",
        )
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise DefinitionError(
                f"tag {k!r}: {v!r} is not str -> str",
                file=location.file, line=location.line, obj=obj, field="tags",
            )
    return MappingProxyType(dict(sorted(tags.items())))


def as_tuple(value: object, *, field: str, location: Location, obj: str) -> tuple[Any, ...]:
    """Accept a list or tuple (never a bare string) and freeze it."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise DefinitionError(
            f"must be a list, got {type(value).__name__}",
            file=location.file, line=location.line, obj=obj, field=field,
        )
    return tuple(value)


def fingerprint(spec: Mapping[str, Any]) -> str:
    """A stable hash of a JSON-able spec (key order does not matter)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Definition:
    """Mixin for registrable definitions: a ``kind``, a spec and the two fingerprints."""

    kind: ClassVar[str]
    name: str
    location: Location
    description: str
    owner: str
    tags: Mapping[str, str]

    def to_spec(self) -> dict[str, Any]:
        raise NotImplementedError

    def data_spec(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_spec().items() if k not in METADATA_KEYS}

    def metadata_spec(self) -> dict[str, Any]:
        spec = self.to_spec()
        return {k: spec[k] for k in METADATA_KEYS if k in spec}

    @property
    def data_fingerprint(self) -> str:
        return fingerprint(self.data_spec())

    @property
    def metadata_fingerprint(self) -> str:
        return fingerprint(self.metadata_spec())

    def __hash__(self) -> int:
        # Definitions are frozen, so the hash (two fingerprints: JSON of the whole spec) is computed
        # once; serving looks definitions up by hash on every request.
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.kind, self.name, self.data_fingerprint, self.metadata_fingerprint))
            object.__setattr__(self, "_hash", cached)
        return cached

    def check_metadata(self, obj: str) -> None:
        """Check the description and owner every definition has, and freeze its tags."""
        check_text(self.description, field="description", location=self.location, obj=obj)
        check_text(self.owner, field="owner", location=self.location, obj=obj)
        object.__setattr__(self, "tags", freeze_tags(self.tags, location=self.location, obj=obj))

    def error(self, message: str, *, field: str | None = None) -> DefinitionError:
        """An error about this definition, pointing at the line that built it."""
        return DefinitionError(
            message, file=self.location.file, line=self.location.line,
            obj=f"{self.kind.replace('_', ' ')} '{self.name}'", field=field,
        )
