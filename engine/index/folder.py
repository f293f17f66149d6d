"""The index folder's files: build folders, the ``current`` link, the build lock, and making them durable.

An index folder holds ``builds/<build id>/``, a ``current`` symlink, the catalog store (``catalog.db``) and a
``.build.lock``. Renames are atomic but not durable until the folder holding them is fsynced: each rename
here is followed by an fsync of its directory, so a build acknowledged before a power cut is there after it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import socket
import sys
import uuid
from pathlib import Path
from typing import IO

CURRENT = "current"
BUILDS = "builds"
KEEP_BUILDS = 3
LOCK_FILE = ".build.lock"


class BuildLockedError(RuntimeError):
    """Another build of the same index folder is running; the message names it."""


def resolve_build(index_dir: Path) -> Path:
    """The folder holding the current build: ``index_dir/current`` if present, else ``index_dir`` itself."""
    link = Path(index_dir) / CURRENT
    if link.exists():
        return link.resolve()
    return Path(index_dir)


def finished_builds(index_dir: Path) -> list[Path]:
    """The index folder's build folders, newest first (ids sort by build time)."""
    builds = Path(index_dir) / BUILDS
    if not builds.is_dir():
        return []
    return sorted((p for p in builds.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)


def fsync_directory(folder: Path) -> None:
    """Make the renames and new entries of ``folder`` durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(folder: Path) -> None:
    """fsync every file of ``folder``, then the folder itself."""
    for path in folder.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    fsync_directory(folder)


def publish_build(index_dir: Path, staging: Path, build_id: str) -> Path:
    """Rename a complete, fsynced staging folder into ``builds/`` and point ``current`` at it, durably."""
    builds = Path(index_dir) / BUILDS
    final = builds / build_id
    os.replace(staging, final)
    fsync_directory(builds)
    link = Path(index_dir) / CURRENT
    temporary = Path(index_dir) / f".{CURRENT}-{uuid.uuid4().hex[:8]}"
    os.symlink(Path(BUILDS) / build_id, temporary)
    os.replace(temporary, link)  # rename(2) over the old symlink is atomic
    fsync_directory(Path(index_dir))
    return final


def prune_builds(index_dir: Path, keep: Path) -> None:
    """Delete old builds beyond the newest ``KEEP_BUILDS`` (never ``keep``, the current one)."""
    for old in finished_builds(index_dir)[KEEP_BUILDS:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def clean_leftovers(index_dir: Path) -> list[Path]:
    """Remove what killed builds left behind (staging folders, temporary links). Call with the build lock held."""
    removed = []
    for stale in [*(Path(index_dir) / BUILDS).glob(".staging-*"), *Path(index_dir).glob(f".{CURRENT}-*")]:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


class BuildLock:
    """One build of an index folder at a time: an exclusive ``flock`` on ``.build.lock``, released by the
    kernel when its process ends (a killed build never leaves it held). The file names the holder."""

    def __init__(self, index_dir: Path) -> None:
        self.path = Path(index_dir) / LOCK_FILE
        self._handle: IO[str] | None = None

    def __enter__(self) -> BuildLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "an unknown process"
            handle.close()
            raise BuildLockedError(
                f"another build of {self.path.parent} is running ({holder}); wait for it to finish, "
                f"or stop that process"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": command}
        handle.write(json.dumps(holder))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *_: object) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
