"""Files that hold secrets: the data directory, the SQLite database, key files.

Modes are set on the open descriptor (never by path after the fact) and new
files replace old ones by rename, so a file that existed with a wider mode, or a
umask of 0, never leaves a secret readable by others. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

__all__ = ["create_private", "ensure_private_dir", "secure_sqlite_files", "write_private"]

_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
# SQLite creates these next to the database (WAL mode), with the database's mode.
_SQLITE_SUFFIXES: Final = ("", "-wal", "-shm", "-journal")


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if missing and make it mode 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
    os.chmod(path, _DIR_MODE)


def write_private(path: Path, data: bytes, *, mode: int = _FILE_MODE) -> None:
    """Replace ``path`` with a new file of ``mode`` (default 0600) holding ``data``.

    Written to an exclusively created sibling, then renamed over ``path``: readers see
    the old file or the new one, never a half-written key, and never an old file's mode.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed (or a 0 umask kept) O_CREAT's mode
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def create_private(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) holding ``data``; refuse if it exists.

    Written and synced under a temporary name, then hard-linked to ``path`` (which
    fails if ``path`` exists, even if it appeared meanwhile): ``path`` never holds a
    partial file, and an existing file is never replaced.

    Raises:
        FileExistsError: ``path`` exists.
    """
    if path.exists() or path.is_symlink():
        raise FileExistsError(f"{path} exists: refusing to overwrite it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    write_private(tmp, data)
    try:
        os.link(tmp, path)
    except FileExistsError as exc:
        raise FileExistsError(f"{path} exists: refusing to overwrite it") from exc
    finally:
        os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the new name survives a crash right after the command
    finally:
        os.close(dir_fd)


def secure_sqlite_files(database: Path) -> None:
    """Make the SQLite database (created empty if missing) and its WAL/SHM files 0600.

    SQLite gives the WAL and SHM files it creates the database file's mode, so a
    database created 0600 here before SQLite opens it keeps them private too.
    """
    fd = os.open(database, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    os.close(fd)
    for suffix in _SQLITE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{database}{suffix}", _FILE_MODE)
