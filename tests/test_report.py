"""The library report of `mer-live label --report` (issue 19, item 1): every song on the plane, the counts,
the table, the failures, every user string escaped, and small at 10,000 songs. The browser half (it opens,
with every song drawn) is in tests/test_views_browser.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser

import numpy as np
import soundfile as sf

from mer_live.label.report import INLINE_TIMELINES, MARGIN, PLANE, render
from mer_live.stats import QUADRANTS, quadrant
from tests.conftest import REPO, tone
from tests.realtime_helpers import tiny_bundle


def row(path: str, v: float, a: float, segments: int = 12, error: str = "") -> dict:
    if error:
        return {"path": path, "error": error}
    q = quadrant(v >= 0.5, a >= 0.5)
    rng = np.random.default_rng(len(path))
    return {"path": path, "duration_s": segments + 2.0, "segments": segments, "valence": v, "arousal": a,
            "valence_label": "", "arousal_label": "", "quadrant": q, "quadrant_name": QUADRANTS[q], "error": "",
            "segment_valence": np.clip(v + rng.normal(0, 0.1, segments), 0, 1).tolist(),
            "segment_arousal": np.clip(a + rng.normal(0, 0.1, segments), 0, 1).tolist()}


class Tags(HTMLParser):
    """Every element the browser would build, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def parse(text: str) -> Tags:
    tags = Tags()
    tags.feed(text)
    return tags


HOSTILE = ["/m/<script>alert(1)</script>.wav", '/m/a&b "c" <i>it</i>.mp3', "/m/" + os.fsdecode(b"\xff\xfesong.mp3"),
           "/m/' onmouseover='alert(2).flac"]


def test_every_user_string_is_escaped():
    rows = [row(p, 0.2 + 0.2 * i, 0.7 - 0.15 * i) for i, p in enumerate(HOSTILE)]
    rows.append(row("/m/<b>bad</b>.mp3", 0, 0, error='cannot decode: <img src=x onerror="alert(3)">'))
    text = render(rows, model="<model>")
    text.encode("utf-8")  # an undecodable file name becomes U+FFFD, not a surrogate that cannot be written
    tags = parse(text)
    assert len(tags.scripts) == 1 and "alert" not in tags.scripts[0]  # our sorting script only
    planted = [(tag, attrs) for tag, attrs in tags.tags if tag in ("img", "b") or any(k.startswith("on") for k in attrs)
               or (tag == "i" and not attrs.get("class", "").startswith("dot "))]  # <i class="dot Qn">: ours
    assert not planted
    for shown in ("&lt;script&gt;alert(1)&lt;/script&gt;.wav", "a&amp;b &quot;c&quot; &lt;i&gt;it&lt;/i&gt;.mp3",
                  "\ufffd\ufffdsong.mp3", "&#x27; onmouseover=&#x27;alert(2).flac", "&lt;model&gt;",
                  "&lt;img src=x onerror=&quot;alert(3)&quot;&gt;"):
        assert shown in text, shown


def test_marks_counts_table_and_failures():
    rows = [row(f"/lib/a/{i:02d}.mp3", v, a) for i, (v, a) in
            enumerate([(0.75, 0.25), (0.9, 0.9), (0.1, 0.8), (0.2, 0.1), (0.6, 0.4), (0.55, 0.45)])]
    rows[3:3] = [row("/lib/b/broken.mp3", 0, 0, error="cannot decode: no audio stream")]
    tags = parse(render(rows, "default"))
    marks = [attrs for tag, attrs in tags.tags if tag == "circle"]
    assert len(marks) == 6
    # the first song: valence 0.75 -> three quarters across, arousal 0.25 -> a quarter up
    assert (float(marks[0]["cx"]), float(marks[0]["cy"])) == (MARGIN + 0.75 * PLANE, MARGIN + 0.75 * PLANE)
    assert [m["class"] for m in marks] == ["Q4", "Q1", "Q2", "Q3", "Q4", "Q4"]
    text = render(rows, "default")
    counts = dict(re.findall(r'id="count-(Q\d)">(\d+)<', text))
    assert counts == {"Q1": "1", "Q2": "1", "Q3": "1", "Q4": "3"}
    assert text.count('<tr id="r') == 6 and 'id="r6"' in text  # rows numbered as their marks, failures apart
    assert text.count("<polyline") == 12  # two timelines per song, inline below the big-report threshold
    assert "Failed files (1)" in text and "<code>/lib/b/broken.mp3</code>: cannot decode: no audio stream" in text
    assert "songs labeled in <code>/lib</code>" in text and "<td>a/00.mp3</td>" in text  # names from the root


def test_ten_thousand_songs_stay_small_and_quick_to_write():
    rng = np.random.default_rng(0)
    rows = [row(f"/music/Artist {i % 300}/Album {i % 40}/{i:05d} Some Song Title.mp3", *rng.random(2),
                segments=int(rng.integers(60, 300))) for i in range(10_000)]
    begin = time.perf_counter()
    text = render(rows, "default")
    elapsed = time.perf_counter() - begin
    size = len(text.encode())
    assert text.count("<circle") == 10_000 and text.count('<tr id="r') == 10_000
    assert 10_000 > INLINE_TIMELINES and "<polyline" not in text  # the timelines go as characters, drawn on view
    assert len(re.findall(r'data-tl="[0-9a-z]{24} [0-9a-z]{24}"', text)) == 10_000
    assert size < 5_000_000, f"{size / 1e6:.1f} MB"
    assert elapsed < 30, f"{elapsed:.1f} s"


def test_label_report_end_to_end(tmp_path):
    music = tmp_path / "my music & more"
    music.mkdir()
    for i, freq in enumerate((220, 330, 440, 660)):
        sf.write(music / f"song <{i}>.wav", tone(8.0, 16000, freq, amp=0.1 + 0.2 * i), 16000)
    (music / "broken.wav").write_bytes(b"RIFF not really a wave")
    report, out = tmp_path / "report.html", tmp_path / "labels.csv"
    result = subprocess.run([sys.executable, "-m", "mer_live", "label", str(music), "--report", str(report), "--out",
                             str(out), "--model", str(tiny_bundle().path), "--workers", "0"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr  # a file failed
    assert f"report of 5 files -> {report}" in result.stderr and "labeled 4 of 5 files" in result.stderr
    assert "Traceback" not in result.stderr
    text = report.read_text(encoding="utf-8")
    assert text.count("<circle") == 4 and text.count("<polyline") == 8
    assert "song &lt;3&gt;.wav" in text and "my music &amp; more" in text
    assert "Failed files (1)" in text and "broken.wav</code>: " in text
    assert "segment_valence" not in out.read_text()  # the CSV keeps its columns: --segments was not given


def test_report_path_is_checked_before_any_work(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mer_live", "label", str(tmp_path), "--report",
                             str(tmp_path / "missing" / "r.html")], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "--report" in result.stderr and "does not exist" in result.stderr
