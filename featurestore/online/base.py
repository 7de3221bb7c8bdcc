"""The ``OnlineStore`` protocol: what materialization, push and online retrieval need of a store.

A store holds one encoded value per key (see ``codec``) and knows nothing of feature views: keys
and values arrive already encoded, as Arrow binary columns for writes and as bytes for reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.config import RepoConfig

# Called after each written batch with the number of rows it held.
Progress = Callable[[int], None]


class OnlineStore(Protocol):
    def write(
        self, batches: Iterable[tuple[pa.Array, pa.Array]], ttl_seconds: int | None,
        progress: Progress | None = None, *, distinct: bool = False,
    ) -> int:
        """Write (keys, values) batches newest-wins: a value replaces the stored one only if its
        (event, created) version is not older. Keys expire ``ttl_seconds`` after their last write
        (None: never). ``distinct`` promises that no key appears twice in the whole write (a
        materialization: one row per entity), which lets a store write keys it does not hold yet
        without comparing versions. Returns how many values were written."""

    def read(self, keys: Sequence[Sequence[bytes]]) -> list[list[bytes | None]]:
        """The values of several groups of keys (one group per view) in one round trip."""

    def delete_matching(self, pattern: str, progress: Progress | None = None) -> int:
        """Delete every key matching a glob ``pattern`` without blocking the server; returns the count."""

    def close(self) -> None: ...


def open_online_store(config: RepoConfig) -> OnlineStore:
    """The store ``featurestore.yaml`` configures: a Redis URL, or the embedded server."""
    from featurestore.online.redis import RedisOnlineStore

    return RedisOnlineStore.from_config(config)
