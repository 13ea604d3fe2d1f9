"""How mer-live stops on a signal: SIGTERM like Ctrl-C, and for live monitoring only a stop event.

The handlers never raise where a loop polls a stop event (live monitoring): an exception raised
inside a handler can land in ``threading.Event.wait`` and break its lock (``RuntimeError: release
unlocked lock``, seen when ``timeout`` sends two signals to a dashboard). Elsewhere (``label``)
SIGTERM raises ``KeyboardInterrupt``, as Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

ESCALATE_SECONDS = 5.0
_stopping: list | None = None  # [stop event, when a signal set it] while stop_on_signals is active


def terminated(signum, frame) -> None:
    """SIGTERM (kill, systemd, a closing session) stops like Ctrl-C: outputs saved, summary printed.

    Under ``stop_on_signals`` (SIGINT too) it only sets the stop event; one signal more than
    ``ESCALATE_SECONDS`` after the first interrupts a loop stuck on input (an idle FIFO read)."""
    if _stopping is None:
        raise KeyboardInterrupt
    stop, since = _stopping
    if not stop.is_set():
        _stopping[1] = time.monotonic()
        stop.set()
    elif time.monotonic() - since > ESCALATE_SECONDS:
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM (any number of them) set ``stop``: the loop ends at its
    next block with its summary. The previous handlers come back afterwards."""
    global _stopping
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _stopping = [stop, time.monotonic()]
    for sig in previous:
        signal.signal(sig, terminated)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stopping = None
