"""pillars: CNNs, LSTMs, Transformers and GANs, trained end to end on real offline data.

The Python API (pillars.api): `pillars.fit(TASK, ...)` trains a task as `pillars train` does and returns its
summary; `pillars.load(RUN_DIR)` gives a trained run. Both are imported on first use, so that `import
pillars` stays cheap (no torch)."""
__version__ = "0.1.0"

__all__ = ["fit", "load"]


def __getattr__(name: str):
    if name in __all__:
        from pillars import api
        return getattr(api, name)
    raise AttributeError(f"module 'pillars' has no attribute {name!r}")
