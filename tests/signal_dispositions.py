"""Signal dispositions for the tests that send signals: the one place they are set up.

A suite started in the background (``make test &``, CI runners, ``nohup``) inherits SIGINT
*ignored*, and an ignored SIGINT stays ignored across ``exec``: Python then installs no
``KeyboardInterrupt`` handler, and a test that sends SIGINT would see nothing happen. Each such
test sets the disposition it relies on itself: :func:`default_signals` for a child process,
:func:`python_sigint` (the ``python_sigint`` fixture of ``tests/conftest.py``) for the test's own.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


def default_signals() -> None:
    """``preexec_fn`` for a child that must react to SIGINT and SIGTERM as from a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def python_sigint() -> Iterator[None]:
    """This process raises ``KeyboardInterrupt`` on SIGINT inside the block (Python's own handler, as
    in a terminal), whatever it inherited; the previous disposition is restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
