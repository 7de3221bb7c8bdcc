"""Which errors are worth a retry (schedulers retry transient ones, fail at once on the others)."""

from __future__ import annotations

import errno

from featurestore.errors import DefinitionError, OnlineStoreError, ValidationError, is_transient


def test_dropped_connections_and_failing_io_are_transient() -> None:
    assert is_transient(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))
    assert is_transient(TimeoutError("timed out"))
    assert is_transient(OSError(errno.EIO, "Input/output error"))
    assert is_transient(OSError(errno.ESTALE, "Stale file handle"))
    assert is_transient(OnlineStoreError("redis gone", transient=True))


def test_missing_files_bad_definitions_and_failed_validation_are_not() -> None:
    assert not is_transient(FileNotFoundError(errno.ENOENT, "No such file"))
    assert not is_transient(PermissionError(errno.EACCES, "Permission denied"))
    assert not is_transient(DefinitionError("bad"))
    assert not is_transient(ValidationError(None, "2 expectations failed"))
    assert not is_transient(OnlineStoreError("wrong password"))
    assert not is_transient(KeyError("x"))
