"""Signal dispositions for the tests that send signals.

A suite started in the background (``make test &``, CI runners, ``nohup``) inherits SIGINT
*ignored*, and an ignored SIGINT stays ignored across ``exec``: Python then installs no
``KeyboardInterrupt`` handler, and a test that sends SIGINT would see nothing happen. Each such
test sets the disposition it relies on itself, with these helpers.
"""

from __future__ import annotations

import signal


def default_signals() -> None:
    """``preexec_fn`` for a child that must react to SIGINT and SIGTERM as from a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
