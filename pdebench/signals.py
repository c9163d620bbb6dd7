"""SIGTERM as an interruption: what schedulers, Ray and container runtimes send is handled as Ctrl-C is.

:class:`Terminated` is a :class:`KeyboardInterrupt`, so every ``except KeyboardInterrupt`` and every
cleanup path (temporary files discarded, streams kept and marked incomplete, workers stopped) runs
for SIGTERM exactly as for SIGINT. :func:`sigterm_interrupts` installs the handler that raises it
(the ``pdebench`` console script runs every command inside it); :func:`interruption_cause` names an
interruption (``"KeyboardInterrupt"`` or ``"SIGTERM"``, the strings stream files record) and
:func:`exit_status` gives the conventional exit status, 128 + the signal number (130 for SIGINT,
143 for SIGTERM); :data:`EXIT_USAGE` is the status of a refused command line (2).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

class Terminated(KeyboardInterrupt):
    """The process received a termination signal (SIGTERM); handled as a Ctrl-C is.

    Attributes
    ----------
    signum
        The signal received.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = int(signum)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere, and where
    SIGTERM is ignored, nothing changes); the previous handler is restored afterwards."""
    installed, previous = False, None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) != signal.SIG_IGN:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        installed = True
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)


def interruption_cause(exc: BaseException) -> str:
    """``"SIGTERM"`` for :class:`Terminated` (SIGTERM), ``"KeyboardInterrupt"`` for a Ctrl-C."""
    if isinstance(exc, Terminated):
        return signal.Signals(exc.signum).name
    return "KeyboardInterrupt"


#: Exit status of a refused command line (bad input, before anything is opened): argparse's own.
EXIT_USAGE = 2


def exit_status(cause: str | BaseException) -> int:
    """Exit status of a process ended by an interruption: 128 + the signal's number (130 for a
    Ctrl-C, ``"KeyboardInterrupt"``; 143 for ``"SIGTERM"``); 1 for any other cause (an error's text)."""
    if isinstance(cause, BaseException):
        cause = interruption_cause(cause) if isinstance(cause, KeyboardInterrupt) else type(cause).__name__
    if cause == "KeyboardInterrupt":
        return 128 + int(signal.SIGINT)
    try:
        return 128 + int(signal.Signals[cause])
    except KeyError:
        return 1
