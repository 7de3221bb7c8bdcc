"""The registry: applied definitions, their versions and fingerprints, runs and history."""

from featurestore.registry.sqlite import Registry, RegistryTransaction, Run, StoredObject

__all__ = ["Registry", "RegistryTransaction", "Run", "StoredObject"]
