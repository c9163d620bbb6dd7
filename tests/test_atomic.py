"""Temporary files of killed runs do not pile up: the next write into their folder removes them (and
says so), ``pdebench clean`` sweeps a tree, and nothing of a running process or of another host is
touched."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pdebench.atomic import _host_tag, atomic_write, stale_temporaries, temporary_path

ROOT = Path(__file__).resolve().parents[1]

_WRITER = textwrap.dedent(
    """
    import sys, time
    from pdebench.atomic import atomic_write
    with atomic_write(sys.argv[1], "wb") as handle:
        handle.write(b"x" * 100_000)
        handle.flush()
        print("writing", flush=True)
        time.sleep(120)
    """
)


def killed_writer(destination: Path) -> tuple[int, Path]:
    """Start a writer of ``destination``, SIGKILL it mid-write; its pid and the temporary file it left."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(destination)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "writing"
        left = [p for p in destination.parent.iterdir() if p.name.startswith(f".{destination.name}.tmp-{proc.pid}-")]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert len(left) == 1 and left[0].exists() and not destination.exists()
    return proc.pid, left[0]


@pytest.fixture
def running_process():
    """A process that stays alive for the test (its pid names a writer still at work)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_the_next_write_into_the_folder_removes_what_a_killed_writer_left_and_says_so(tmp_path, running_process, caplog):
    pid, left = killed_writer(tmp_path / "results.json")
    working = tmp_path / f".other.h5.tmp-{running_process}-0123abcd-{_host_tag()}"  # a writer still at work
    foreign = tmp_path / f".other.h5.tmp-{pid}-0123abcd-someotherhost"  # a shared filesystem: not our pid
    legacy = tmp_path / f".old.h5.tmp-{pid}-89abcdef"  # written before names carried the host
    unrelated = tmp_path / ".notes.tmp-keep"
    for path in (working, foreign, legacy, unrelated):
        path.write_bytes(b"y")
    assert [item.path for item in stale_temporaries(tmp_path)] == sorted([left, legacy])
    with caplog.at_level(logging.WARNING, logger="pdebench.atomic"):
        with atomic_write(tmp_path / "other.json", "w") as handle:
            handle.write("{}")
    assert not left.exists() and not legacy.exists()
    assert working.exists() and foreign.exists() and unrelated.exists()
    assert (tmp_path / "other.json").read_text() == "{}"
    message = " ".join(record.getMessage() for record in caplog.records)
    assert "removed 2 temporary file(s)" in message and str(left) in message
    assert temporary_path(tmp_path / "x.h5").name.endswith(f"-{_host_tag()}")


def test_pdebench_clean_sweeps_a_tree_and_a_dry_run_removes_nothing(tmp_path, running_process):
    (tmp_path / "run" / "stream").mkdir(parents=True)
    _, left = killed_writer(tmp_path / "run" / "stream" / "rank0.json")
    working = tmp_path / "run" / f".data.h5.tmp-{running_process}-0123abcd-{_host_tag()}"
    working.write_bytes(b"y")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    dry = subprocess.run([sys.executable, "-m", "pdebench", "clean", "--dry-run", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "would remove" in dry.stdout and left.name in "".join(dry.stdout.split()) and left.exists()
    result = subprocess.run([sys.executable, "-m", "pdebench", "clean", str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "removed 1 temporary file(s)" in " ".join(result.stdout.split())
    assert not left.exists() and working.exists()
    bad = subprocess.run([sys.executable, "-m", "pdebench", "clean", str(tmp_path / "missing")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "missing" in bad.stderr
