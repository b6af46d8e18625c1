import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Small, fast settings of fashion-cnn for tests of the loop's mechanics (real data, tiny model).
TINY = ["width=8", "hidden=32", "train_samples=2048", "batch_size=64", "eval_batches=2",
        "eval_batch_size=500", "log_every=5"]


def pillars(*args, env=None, check=True, timeout=600, fresh=False, **kw) -> subprocess.CompletedProcess:
    """Run the command line as a user would: `pillars.cli.main` in this process (torch is imported once for
    the whole suite), or in a fresh `python -m pillars` process when the test changes the environment or
    the folder, or asks for one (`fresh=True`: signals, torchrun, a clean import)."""
    if fresh or env or "cwd" in kw:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        result = subprocess.run([sys.executable, "-m", "pillars", *args], capture_output=True, text=True,
                                env=full_env, timeout=timeout, cwd=kw.get("cwd", ROOT))
    else:
        result = in_process(list(args))
    if check and result.returncode != 0:
        raise AssertionError(f"pillars {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def in_process(argv: list[str]) -> subprocess.CompletedProcess:
    """`pillars ARGV` through the same entry point as the command (its exit status, its stdout and stderr;
    an exception that escapes it is printed as Python would print it, with status 1)."""
    import contextlib
    import io
    import traceback

    from pillars.cli import main
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if e.code is not None and not isinstance(e.code, int):
                    print(e.code, file=sys.stderr)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(cwd)
    return subprocess.CompletedProcess(["pillars", *argv], code or 0, out.getvalue(), err.getvalue())


def sets(*items) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="session")
def fashion():
    """Fashion-MNIST from the cache (fetched from its Debian package on first use)."""
    from pillars import data
    return data.load("fashion-mnist")


# The files that take longest run first, so that the two pytest-xdist workers of `make test` (one file per
# worker at a time: --dist loadfile, in this order: --no-loadscope-reorder) end together instead of one
# waiting for the other's last long file.
# Measured totals on one core (AMD EPYC): the tour about 400 s, then about 185, 135, 130, 120, 95, 90, 60, 30,
# 25, 20 s; the files not named take a few seconds each and fill the end.
SLOWEST_FIRST = ("test_tour.py", "test_train.py", "test_sequences.py", "test_cnn.py", "test_gan.py",
                 "test_language.py", "test_elastic.py", "test_translation.py", "test_pretraining.py",
                 "test_gan_augment.py", "test_detection.py", "test_plugins.py",
                 "test_run_safety.py", "test_export.py", "test_api.py", "test_demo.py", "test_stocks.py",
                 "test_speech.py", "test_faults.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: each file keeps its order


def chromium_paths() -> tuple[str | None, str | None]:
    """Debian's chromium and its chromedriver (`make test` installs them when run as root)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or next((p for p in ("/usr/lib/chromium/chromedriver",)
                                                   if Path(p).exists()), None)
    return chromium, driver


needs_chromium = pytest.mark.skipif(not all(chromium_paths()), reason="needs Debian's chromium and chromium-driver "
                                    "(`make test` installs them when run as root: apt-get install chromium "
                                    "chromium-driver)")


def headless_chromium(logs: tuple[str, ...] = ("browser",)):
    """A selenium driver of headless Chromium at 1100x900, keeping the named logs (browser, performance)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {name: "ALL" for name in logs})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
