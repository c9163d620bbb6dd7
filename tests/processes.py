"""What the tests that stop processes check afterwards: every drawn sample id accounted for exactly
once, and no process of the stopped command's group left running."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path


def expand(ranges: Iterable[Iterable[int]]) -> set[tuple[int, int]]:
    """``[(seed, start, stop), ...]`` -> the set of sample ids ``(seed, index)``."""
    return {(int(seed), i) for seed, start, stop in ranges for i in range(int(start), int(stop))}


def assert_partition(drawn: set, **parts: set) -> None:
    """``parts`` are disjoint and together exactly ``drawn``."""
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not parts[a] & parts[b], f"ids both {a} and {b}: {sorted(parts[a] & parts[b])[:5]}"
    union = set().union(*parts.values())
    assert union == drawn, f"drawn but unaccounted: {sorted(drawn - union)[:5]}; accounted but not drawn: {sorted(union - drawn)[:5]}"


def wait_for(predicate: Callable[[], bool], timeout: float = 90.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def assert_no_orphans(pgid: int, timeout: float = 15.0) -> None:
    """Within ``timeout`` seconds no process of group ``pgid`` (the stopped command's) runs."""
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_members(pgid), f"processes of the stopped command outlived it: {group_members(pgid)}"
