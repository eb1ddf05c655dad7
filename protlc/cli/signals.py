"""SIGTERM for the commands that write one output (prepare, predict, audit, score).

Python's default for SIGTERM ends the process at once, leaving the hidden temporary file of an atomic
output behind. Inside :func:`terminate_cleanly`, SIGTERM raises :class:`~protlc.errors.Terminated` in the
main thread instead (as Ctrl-C raises KeyboardInterrupt): the temporary files are removed and the CLI
prints one line and exits with status 143. ``train`` and ``train-dms`` leave SIGTERM to Lightning's
graceful shutdown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

from protlc.errors import Terminated


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != pid:  # a forked child inherited the handler: die as SIGTERM says
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
