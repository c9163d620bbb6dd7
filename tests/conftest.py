"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import signal_dispositions


@pytest.fixture
def python_sigint() -> Iterator[None]:
    """This process raises ``KeyboardInterrupt`` on SIGINT for the test, even when the suite was
    started with SIGINT ignored (:func:`tests.signal_dispositions.python_sigint`)."""
    with signal_dispositions.python_sigint():
        yield
