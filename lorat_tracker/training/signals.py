"""Ctrl-C / SIGTERM during training: the first asks the loop to stop after the current step (it then
writes a checkpoint and exits 130, resumable); a second aborts at once without one.

A part of its own because it is process state (handlers installed for the loop and restored after
it, whichever way the loop ends), while *where* to stop - after a whole step, the same step on every
rank - stays the loop's decision: the loop reads ``requested`` and all-reduces it.
"""
from __future__ import annotations

import signal
import sys


class StopRequest:
    """``with StopRequest(announce=rank == 0) as stop: ... if stop.requested: ...``"""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True):
        self.announce = announce
        self.requested = False
        self._count = 0
        self._old = {}

    def _handle(self, signum, frame):
        self._count += 1
        if self._count > 1:  # a second Ctrl-C: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print("\nlorat train: stopping after this step and writing a checkpoint (Ctrl-C again to abort)",
                  file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequest":
        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a notebook worker)
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}
