"""The live page's server (issue 19, item 3) over real HTTP: the page and its policy, the event stream
(the same objects as --jsonl, ids a reconnecting browser resumes from, a final ``stopped``), and the
command's options."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from mer_live.errors import MerLiveError
from mer_live.live.web import LivePage, page_html
from tests.conftest import REPO
from tests.realtime_helpers import music_wav, tiny_bundle


def read_events(port: int, last_id: str | None = None, until=lambda e: e["event"] == "stopped",
                timeout: float = 60) -> tuple[list[dict], list[str]]:
    """Events (and their ids) from /events until ``until`` holds for one, or the server ends the stream."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", "/events", headers={"Last-Event-ID": last_id} if last_id else {})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    events, ids = [], []
    try:
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                ids.append(line[4:])
            elif line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if until(events[-1]):
                    break
    finally:
        conn.close()
    return events, ids


def test_the_page_is_self_contained_and_says_so_in_its_policy():
    stop = threading.Event()
    with LivePage(stop, port=0) as page:
        port = page.server.server_address[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200 and body == page_html()
        policy = response.getheader("Content-Security-Policy")
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        conn.request("GET", "/nothing-here")
        missing = conn.getresponse()
        assert missing.status == 404 and b"/events" in missing.read()
        conn.close()
    text = body.decode()
    # nothing fetched: no src/href to anywhere, no URL but the SVG namespace (a name, never fetched)
    assert not re.search(r"\b(src|href)\s*=", text)
    assert set(re.findall(r"https?://[^\s\"')]+", text)) <= {"http://www.w3.org/2000/svg"}
    assert "innerHTML" not in text  # event text goes in as textContent: a file name is never markup


def assert_nothing_listens(port: int) -> None:
    """The page's port takes a new listener, which Linux refuses while anything still listens there (a
    connect test can self-connect on a free local port)."""
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


def test_events_in_order_resumed_by_id_and_ended_by_stopped():
    stop = threading.Event()
    with LivePage(stop, port=0) as page:
        port = page.server.server_address[1]
        page.start("a <b>&amp; \"name\".wav", "tiny", "CPU", 30.0, 3.0)
        for t in range(3, 8):
            page.events.publish({"event": "segment", "song_number": 1, "t": float(t)})
        first, ids = read_events(port, until=lambda e: e.get("t") == 7.0)
        assert [e["event"] for e in first] == ["start"] + ["segment"] * 5
        assert first[0]["source"] == "a <b>&amp; \"name\".wav" and first[0]["run"] == page.events.run
        # a browser reconnecting after the third event gets the rest, nothing twice
        later = {"event": "song_end", "song_number": 1, "valence": 0.7, "arousal": 0.2}
        page.events.publish(later)
        resumed, _ = read_events(port, last_id=ids[2], until=lambda e: e["event"] == "song_end")
        assert [e.get("t") for e in resumed] == [5.0, 6.0, 7.0, None] and resumed[-1] == later
        # an id from another run (the page outlived an earlier mer-live) starts over
        fresh, _ = read_events(port, last_id="0000-4", until=lambda e: e["event"] == "song_end")
        assert fresh[0]["event"] == "start" and len(fresh) == 7
        waiting: list = []
        reader = threading.Thread(target=lambda: waiting.extend(read_events(port, last_id=ids[-1])[0]))
        reader.start()
        time.sleep(0.3)
        page.close(t=7.0, segments=5)
        reader.join(timeout=10)
    assert not reader.is_alive() and waiting[-1] == {"event": "stopped", "t": 7.0, "segments": 5}
    assert_nothing_listens(port)


def test_the_stop_event_closes_the_page_even_when_the_loop_never_comes_back(monkeypatch):
    monkeypatch.setattr("mer_live.live.web.CLOSE_GRACE_SECONDS", 0.2)
    stop = threading.Event()
    page = LivePage(stop, port=0).__enter__()
    port = page.server.server_address[1]
    stop.set()
    deadline = time.monotonic() + 10
    # closed: the events ended, the serving thread joined, and then its listening socket closed
    while not page.events.closed or page._serving.is_alive() or page.server.socket.fileno() != -1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert_nothing_listens(port)


def test_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MerLiveError, match=f"--web: cannot serve on 127.0.0.1 port {port}: in use"):
            LivePage(threading.Event(), port=port)


def mer_live(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mer_live", *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_web_streams_the_jsonl_objects_and_stops_with_the_file():
    proc = mer_live("--file", music_wav(seconds=7.0), "--web", "0", "--jsonl", "--model", tiny_bundle().path)
    try:
        port = None
        while port is None:
            line = proc.stderr.readline()
            assert line, f"ended before serving: {proc.stderr.read()}"
            found = re.search(r"live page at http://127\.0\.0\.1:(\d+)/", line)
            port = found and int(found.group(1))
        events, _ = read_events(port)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "start" and events[0]["source"] == str(music_wav(seconds=7.0))
    assert events[-1]["event"] == "stopped" and events[-1]["segments"] == len(lines) - 1
    assert events[1:-1] == lines  # the same objects as --jsonl, song_end included
    assert "Traceback" not in err


def test_web_options_are_checked_before_anything_loads():
    for args, message in (((["--file", "x.wav", "--host", "0.0.0.0"]), "--host is where --web serves its page"),
                          ((["--file", "x.wav", "--web", "70000"]), "--web 70000: a port is 0-65535")):
        proc = mer_live(*args)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and message in err, err
