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
_stopping: list | None = None  # [stop event, when the first signal came (None: none yet)]


def terminated(signum, frame) -> None:
    """SIGTERM (kill, systemd, a closing session) stops like Ctrl-C: outputs saved, summary printed.

    Under ``stop_on_signals`` (SIGINT too) it only sets the stop event; one signal more than
    ``ESCALATE_SECONDS`` after the first interrupts a loop stuck on input (an idle FIFO read)."""
    if _stopping is None:
        raise KeyboardInterrupt
    stop, since = _stopping
    if since is None:  # the first signal (the loop may have stopped already: the end of a file, `q`)
        _stopping[1] = time.monotonic()
        stop.set()
    elif time.monotonic() - since > ESCALATE_SECONDS:
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM (any number of them) set ``stop``: the loop ends at its
    next block with its summary. The previous handlers come back afterwards, unless a signal came: then
    the process is on its way out, and the rest of the burst (`timeout` sends two, a closing terminal
    more) must not land as a KeyboardInterrupt in its teardown."""
    global _stopping
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _stopping = [stop, None]
    for sig in previous:
        signal.signal(sig, terminated)
    try:
        yield
    finally:
        if _stopping[1] is None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _stopping = None


def quiet_exit() -> None:
    """Once a signal has ended the run, ignore the rest of its burst while Python finalizes: finalizing
    puts back the default action, and a late TERM or INT would then kill the exiting process (-15, -2)
    after its summary. Called by ``mer_live.cli.main`` as it returns."""
    if _stopping is not None and _stopping[1] is not None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
