"""Files that appear under their name only when complete: a temporary file beside the destination
(same filesystem), flushed and fsynced, then :func:`os.replace` d over it and the folder fsynced. A crash
or an exception at any point leaves either the old file or the new one, never a half-written one,
and no temporary file behind (except after SIGKILL, which leaves a hidden ``.name.tmp-*``)."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


def temporary_path(path: Path) -> Path:
    """A fresh hidden name next to ``path``: ``.{name}.tmp-{pid}-{random}`` (same filesystem)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


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
