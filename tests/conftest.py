"""Fixtures shared by the whole suite."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest


@pytest.fixture
def python_sigint() -> Iterator[None]:
    """This process raises ``KeyboardInterrupt`` on SIGINT for the test, even when the suite was
    started with SIGINT ignored (see ``tests/signal_dispositions.py``); restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
