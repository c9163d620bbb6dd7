"""Files that appear under their name only when complete: a temporary file beside the destination
(same filesystem), flushed and fsynced, then :func:`os.replace` d over it and the folder fsynced. A crash
or an exception at any point leaves either the old file or the new one, never a half-written one,
and no temporary file behind.

SIGKILL (or a power cut) leaves the hidden ``.{name}.tmp-{pid}-{random}-{host}`` of the killed
process. Such files are swept: every new temporary file first removes those of its folder whose
process, on this host, is gone (:func:`sweep_stale_temporaries`, logged as a warning), and
``pdebench clean FOLDER`` sweeps a whole tree. A file whose process still runs, or that another host
wrote (a shared filesystem: its pid means nothing here), is never touched."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

#: ``.{name}.tmp-{pid}-{8 hex}[-{host}]`` (names written before the host was recorded have none).
_TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})(?:-(?P<host>[A-Za-z0-9]*))?$")


def _host_tag() -> str:
    """This machine's name reduced to ``[A-Za-z0-9]`` (at most 40 characters), as temporary names carry it."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40]


def temporary_path(path: Path, *, sweep: bool = True) -> Path:
    """A fresh hidden name next to ``path``: ``.{name}.tmp-{pid}-{random}-{host}`` (same filesystem).

    With ``sweep`` (the default) the temporary files that killed processes left in that folder are
    removed first (:func:`sweep_stale_temporaries`)."""
    if sweep:
        sweep_stale_temporaries(path.parent)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}-{_host_tag()}")


@dataclass(frozen=True)
class StaleTemporary:
    """A temporary file whose writer is gone: ``path``, its ``size`` in bytes, the writer's ``pid``
    and the ``destination`` it was to become."""

    path: Path
    size: int
    pid: int
    destination: Path


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one owned by another user counts)."""
    if pid <= 0:
        return True  # not a pid we wrote: leave the file alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # platforms without signal 0
        return True
    return True


def stale_temporaries(folder: Path, *, recursive: bool = False) -> list[StaleTemporary]:
    """The temporary files (and folders: a Zarr store being written, ``size`` its files' total) of
    :func:`temporary_path` in ``folder`` (and below it with ``recursive``) whose process is gone: written on this host (or before names carried the host) by a pid that no
    longer exists. Files of running processes and of other hosts are not listed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    host = _host_tag()
    candidates = folder.rglob(".*.tmp-*") if recursive else folder.glob(".*.tmp-*")
    stale = []
    for path in candidates:
        match = _TEMPORARY_NAME.match(path.name)
        if match is None or not (path.is_file() or path.is_dir()) or path.is_symlink():
            continue
        if match["host"] not in (None, host):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _process_alive(pid):
            continue
        try:
            size = (sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir()
                    else path.stat().st_size)
        except FileNotFoundError:  # removed meanwhile
            continue
        stale.append(StaleTemporary(path, size, pid, path.with_name(match["name"])))
    return sorted(stale, key=lambda item: str(item.path))


def sweep_stale_temporaries(folder: Path, *, recursive: bool = False) -> list[StaleTemporary]:
    """Delete :func:`stale_temporaries` of ``folder``; log one warning naming them and their total
    size; return what was deleted (files that vanished or could not be deleted are left out)."""
    removed = []
    for item in stale_temporaries(folder, recursive=recursive):
        try:
            if item.path.is_dir():  # a folder store (Zarr) being written
                shutil.rmtree(item.path)
            else:
                item.path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove %s, left by process %d: %s", item.path, item.pid, exc)
            continue
        removed.append(item)
    if removed:
        log.warning("removed %d temporary file(s) of runs that were killed before finishing (%.1f MiB): %s",
                    len(removed), sum(item.size for item in removed) / 2**20,
                    ", ".join(str(item.path) for item in removed))
    return removed


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # platforms that cannot open folders (Windows): nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("fsync of folder %s is not supported", folder)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit make it ``path``.

    Parameters
    ----------
    path
        Destination; its folder is created if missing.
    mode
        ``"wb"`` or ``"w"``.

    Examples
    --------
    >>> with atomic_write(folder / "results.json", "w") as handle:  # doctest: +SKIP
    ...     handle.write(text)
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_folder(path.parent)
