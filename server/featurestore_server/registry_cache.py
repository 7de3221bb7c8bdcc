"""The applied definitions, held in memory and refreshed in the background.

Requests resolve feature refs and services from this snapshot only: no registry read on the
request path. A background task checks the registry's last apply id every few seconds (in a
thread) and swaps in a new snapshot when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from featurestore.definitions import FeatureService, FeatureView, OnDemandFeatureView, definition_from_spec
from featurestore.errors import UnknownObjectError
from featurestore.resolve import FeatureRequests
from featurestore.store import FeatureStore, resolve_features

log = logging.getLogger("featurestore.server")


@dataclass
class Snapshot:
    apply_id: int | None
    views: dict[str, FeatureView]
    services: dict[str, FeatureService]
    versions: dict[str, int] = field(default_factory=dict)
    resolved: dict[Any, FeatureRequests] = field(default_factory=dict)
    on_demand: dict[str, OnDemandFeatureView] = field(default_factory=dict)

    def service(self, name: str) -> FeatureService:
        found = self.services.get(name)
        if found is None:
            known = sorted(self.services) or "none"
            raise UnknownObjectError(f"unknown feature service {name!r}; applied feature services: {known}")
        return found

    def resolve(self, features: str | tuple[str, ...], full_feature_names: bool) -> FeatureRequests:
        key = (features, full_feature_names)
        found = self.resolved.get(key)
        if found is None:
            found = resolve_features(
                features if isinstance(features, str) else list(features), self.views, self.service,
                full_feature_names=full_feature_names, on_demand=self.on_demand,
            )
            if len(self.resolved) < 10_000:  # bounded: refs come from clients
                self.resolved[key] = found
        return found


class RegistryCache:
    def __init__(self, store: FeatureStore, refresh_seconds: float = 5.0) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.snapshot = self.load()
        self._task: asyncio.Task[None] | None = None

    def load(self) -> Snapshot:
        registry, project = self.store.registry, self.store.project
        views = registry.list_objects(project, FeatureView.kind)  # one read gives definitions and versions
        return Snapshot(
            registry.latest_apply(project),
            {o.name: cast(FeatureView, definition_from_spec(FeatureView.kind, o.spec)) for o in views},
            {s.name: s for s in self.store.list_feature_services()},
            {o.name: o.version for o in views},
            on_demand={v.name: v for v in self.store.list_on_demand_feature_views()},
        )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except Exception:
                log.exception("registry refresh failed; serving the previous definitions")

    async def refresh(self) -> bool:
        """Reload when something was applied since the last load; True when it changed."""
        latest = await asyncio.to_thread(self.store.registry.latest_apply, self.store.project)
        if latest == self.snapshot.apply_id:
            return False
        self.snapshot = await asyncio.to_thread(self.load)
        log.info("registry reloaded", extra={"apply_id": latest})
        return True
