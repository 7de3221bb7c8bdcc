"""One error tree for the whole project.

Every error says what failed, where (file, line, field, row) and how to fix it. Errors are marked
``transient`` when retrying the same call may succeed (a connection dropped), so schedulers can
decide to retry without parsing messages.
"""

from __future__ import annotations


class FeatureStoreError(Exception):
    """Root of every error this project raises on purpose."""

    transient: bool = False


_TRANSIENT_ERRNOS = {"EIO", "ESTALE", "ETIMEDOUT", "ECONNRESET", "ECONNABORTED", "EAGAIN", "EBUSY", "ENETDOWN",
                     "ENETUNREACH", "EHOSTUNREACH", "ENOLCK"}


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may succeed: a project error marked transient, or a dropped connection or
    failing I/O of a (network) file system. A missing file or a bad definition is not transient."""
    import errno

    if isinstance(exc, FeatureStoreError):
        return exc.transient
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, "") in _TRANSIENT_ERRNOS
    return False


class DefinitionError(FeatureStoreError):
    """A feature definition is invalid. Names the file, line and field when known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        obj: str | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.obj = obj
        self.field = field
        self.reason = message
        where = []
        if file:
            where.append(f"{file}:{line}" if line else file)
        if obj:
            where.append(obj)
        if field:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class RepoError(FeatureStoreError):
    """The repo as a whole is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"the feature repo has {len(problems)} {noun}:\n{listing}")


class ConfigError(FeatureStoreError):
    """featurestore.yaml is missing or invalid."""


class RegistryError(FeatureStoreError):
    """The registry cannot be read or written."""


class PlanError(FeatureStoreError):
    """An apply was refused (for example a destructive change without permission)."""


class RetrievalError(FeatureStoreError):
    """A retrieval request is invalid: bad entity frame, unknown feature, ambiguous names."""


class UnknownObjectError(RetrievalError):
    """A named entity, feature view or feature service is not applied."""


class SourceError(FeatureStoreError):
    """A data source cannot be read (missing file, unreadable format)."""


class MaterializationError(FeatureStoreError):
    """A materialization run failed; nothing of it became visible."""


class OnlineStoreError(FeatureStoreError):
    """The online store cannot be reached or answered with an error."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ValidationError(FeatureStoreError):
    """A batch failed its expectations and the policy is ``fail``: nothing of it was written.
    ``result`` holds every expectation's outcome."""

    def __init__(self, result: object, message: str) -> None:
        self.result = result
        super().__init__(message)


class PushError(FeatureStoreError):
    """Pushed rows do not fit the feature view (missing columns, wrong types)."""
