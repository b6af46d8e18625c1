import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Small, fast settings of fashion-cnn for tests of the loop's mechanics (real data, tiny model).
TINY = ["width=8", "hidden=32", "train_samples=2048", "batch_size=64", "eval_batches=2",
        "eval_batch_size=500", "log_every=5"]


def pillars(*args, env=None, check=True, timeout=600, **kw) -> subprocess.CompletedProcess:
    """Run the command line in a fresh process, as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "pillars", *args], capture_output=True, text=True,
                            env=full_env, timeout=timeout, cwd=kw.get("cwd", ROOT))
    if check and result.returncode != 0:
        raise AssertionError(f"pillars {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def sets(*items) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="session")
def fashion():
    """Fashion-MNIST from the cache (fetched from its Debian package on first use)."""
    from pillars import data
    return data.load("fashion-mnist")
