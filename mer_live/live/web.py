"""The live page (``mer-live --mic --web [PORT]``): the monitor in a browser, on a second screen or in
a streaming overlay.

The standard library's ``ThreadingHTTPServer`` serves ``/`` (``page.html``: inline CSS and script,
nothing fetched from anywhere) and ``/events``, a Server-Sent Events stream of the JSON objects
``--jsonl`` prints (``segment``, ``song_end``) plus ``start`` (what is being monitored) and a final
``stopped``. Every event carries an id, so a browser that reconnects (``EventSource`` does it by
itself) gets what it missed and no duplicates; a new page gets the finished songs and the recent
segments first. The monitoring loop only appends to ``Events`` (never blocks on a slow client);
each client's thread waits on one condition for what follows its last id.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mer_live.errors import MerLiveError

DEFAULT_PORT = 8765
KEEPALIVE_SECONDS = 10.0  # a comment line this often: proxies keep the stream, a dead client is noticed
RETRY_MS = 1500  # how soon a browser reconnects after losing the stream
RECENT_SEGMENTS = 600  # segment events a new page gets (10 minutes at a 1 s hop)
RECENT_SONGS = 1000
CLOSE_GRACE_SECONDS = 5.0  # after the stop event, how long the loop may take to end before the page closes itself
# The page may run its own inline script and talk to this server only: nothing is fetched from the network.
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
               "img-src data:; base-uri 'none'; form-action 'none'")


class Events:
    """What the page is told, numbered; kept bounded (the finished songs and the recent segments)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.run = secrets.token_hex(4)  # event ids are RUN-SEQ: a page that outlived an earlier run starts over
        self._seq = 0
        self._start: tuple[int, str] | None = None
        self._songs: deque[tuple[int, str]] = deque(maxlen=RECENT_SONGS)
        self._segments: deque[tuple[int, str]] = deque(maxlen=RECENT_SEGMENTS)
        self._last: tuple[int, str] | None = None  # the final event (stopped)
        self.closed = False

    @property
    def seq(self) -> int:
        return self._seq

    def publish(self, event: dict) -> None:
        if event.get("event") == "start":
            event = {**event, "run": self.run}
        text = json.dumps(event)
        with self._cond:
            if self.closed:
                return
            self._seq += 1
            item = (self._seq, text)
            kind = event.get("event")
            if kind == "start":
                self._start = item
            elif kind == "song_end":
                self._songs.append(item)
            else:
                self._segments.append(item)
            self._cond.notify_all()

    def close(self, event: dict) -> None:
        """The last event; clients send it and end their streams."""
        with self._cond:
            if self.closed:
                return
            self._seq += 1
            self._last = (self._seq, json.dumps(event))
            self.closed = True
            self._cond.notify_all()

    def after(self, seq: int, timeout: float) -> tuple[list[tuple[int, str]], bool]:
        """Events numbered above ``seq`` (waiting up to ``timeout`` for one), and whether the stream is over
        once they are sent."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seq or self.closed, timeout)
            kept = [self._start] if self._start else []
            kept += [*self._songs, *self._segments] + ([self._last] if self._last else [])
            return sorted(item for item in kept if item[0] > seq), self.closed


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", self.server.page, {"Content-Security-Policy": PAGE_POLICY})
        elif path == "/events":
            self._events()
        elif path == "/favicon.ico":
            self._send(204, "image/x-icon", b"")
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: the page is at / and its events at /events\n")

    def _send(self, status: int, kind: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _events(self) -> None:
        events = self.server.events
        run, _, seq = (self.headers.get("Last-Event-ID") or "").partition("-")
        last = int(seq) if run == events.run and seq.isdigit() else 0  # an earlier run's id: start over
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.server.client(+1)
        try:
            self.wfile.write(f"retry: {RETRY_MS}\n\n".encode())
            while True:
                batch, closed = events.after(last, KEEPALIVE_SECONDS)
                chunk = "".join(f"id: {events.run}-{n}\ndata: {text}\n\n" for n, text in batch) or ": keep-alive\n\n"
                self.wfile.write(chunk.encode())
                self.wfile.flush()
                if batch:
                    last = batch[-1][0]
                if closed:
                    return
        except OSError:  # the page went away (broken pipe, reset); it reconnects by itself if still open
            return
        finally:
            self.server.client(-1)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the standard library's signature
        pass  # requests are not news: the dashboard or the JSON lines own the terminal


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], page: bytes, events: Events) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.page, self.events = page, events
        self.clients = 0  # open event streams
        self._clients_changed = threading.Condition()
        super().__init__(address, _Handler)

    def client(self, delta: int) -> None:
        with self._clients_changed:
            self.clients += delta
            self._clients_changed.notify_all()

    def wait_for_clients(self, timeout: float) -> None:
        """Until every event stream has ended (each ends once it has sent ``stopped``), at most ``timeout``."""
        with self._clients_changed:
            self._clients_changed.wait_for(lambda: self.clients == 0, timeout)


def page_html() -> bytes:
    return (Path(__file__).with_name("page.html")).read_bytes()


class LivePage:
    """The server and a monitoring sink: ``updates`` and ``song_ended`` become events.

    Use it as a context manager around the monitoring loop: leaving it sends ``stopped`` and stops the
    server. The stop event that ends the loop (q, Ctrl-C, SIGTERM, the end of a file) ends the server
    too: should the loop not come back within ``CLOSE_GRACE_SECONDS`` of it, the page closes itself.
    """

    def __init__(self, stop: threading.Event, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.stop = stop
        self.events = Events()
        try:
            self.server = _Server((host, port), page_html(), self.events)
        except OSError as exc:
            hint = "in use (another mer-live?); give another port, or 0 for any free one" \
                if exc.errno in (98, 48) else (exc.strerror or str(exc))
            raise MerLiveError(f"--web: cannot serve on {host} port {port}: {hint}") from None
        self._serving: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
        return f"http://{shown}:{port}/"

    def __enter__(self) -> LivePage:
        self._serving = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                         name="mer-live-web", daemon=True)
        self._serving.start()
        threading.Thread(target=self._watch, name="mer-live-web-stop", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _watch(self) -> None:
        self.stop.wait()
        if not self._closed.wait(CLOSE_GRACE_SECONDS):  # the loop's own end says more (its last song)
            self.close()

    def start(self, source: str, model: str, provider: str, horizon: float, segment_seconds: float) -> None:
        self.events.publish({"event": "start", "source": source, "model": model, "provider": provider,
                             "horizon": round(horizon, 3), "segment_seconds": round(segment_seconds, 3)})

    # the monitoring sink (monitor.run calls these)
    def updates(self, updates, stream) -> None:
        for update in updates:
            self.events.publish(update.to_json())

    def song_ended(self, song) -> None:
        self.events.publish(song.to_json())

    def tick(self, stream) -> None:
        pass

    def close(self, **final) -> None:
        """Send ``stopped`` (with ``final``'s fields), give the open pages a moment to get it, stop serving.
        Idempotent, from any thread."""
        self.events.close({"event": "stopped", **final})
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        self.server.wait_for_clients(1.0)
        if self._serving is not None:
            self.server.shutdown()
            self._serving.join(timeout=2)
        self.server.server_close()


class Tee:
    """A monitoring sink that hands everything to two: the dashboard or JSON lines, and the page."""

    def __init__(self, first, second) -> None:
        self.first, self.second = first, second

    def updates(self, updates, stream) -> None:
        self.first.updates(updates, stream)
        self.second.updates(updates, stream)

    def song_ended(self, song) -> None:
        for sink in (self.first, self.second):
            ended = getattr(sink, "song_ended", None)
            if ended is not None:
                ended(song)

    def tick(self, stream) -> None:
        self.first.tick(stream)
