"""Small frictions of the trial (issue 19, item 6): the label table keeps the quadrant name on one line at
80 columns, sizes to its content off a terminal, and the README's headline quotes the model card."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest
from rich.console import Console

from mer_live.stats import QUADRANTS
from tests.conftest import REPO
from tests.realtime_helpers import music_wav, tiny_bundle


def rows(error: bool) -> list[dict]:
    out = [{"path": f"/music/a rather long folder name/and a long file name number {i}.mp3", "duration_s": 30.0,
            "valence": 0.2 + 0.2 * i, "arousal": 0.8 - 0.2 * i, "valence_label": "high", "arousal_label": "low",
            "quadrant": q, "quadrant_name": QUADRANTS[q], "error": ""} for i, q in enumerate(QUADRANTS)]
    if error:
        out.append({"path": "/music/broken.mp3", "error": "cannot decode: invalid data found when processing input"})
    return out


@pytest.mark.parametrize("error", [False, True], ids=["all labeled", "with a failure"])
@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_quadrant_name_stays_on_one_line(width: int, error: bool):
    from mer_live.label.batch import print_table

    out = io.StringIO()
    print_table(rows(error), Console(file=out, width=width))
    lines = out.getvalue().splitlines()
    assert max(map(len, lines)) <= width
    for q, name in QUADRANTS.items():
        assert sum(f"{q} {name}" in line for line in lines) == 1, out.getvalue()
    assert ("error" in lines[1]) is error  # the column is there only when a file failed


def test_off_a_terminal_the_table_is_as_wide_as_its_content(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mer_live", "label", str(music_wav()), "--format", "table",
                             "--model", str(tiny_bundle().path), "--workers", "0"], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    widths = [len(line) for line in result.stdout.splitlines() if line.strip()]
    table = [line for line in result.stdout.splitlines() if line.startswith(("┏", "┃", "│", "└"))]
    assert len({len(line) for line in table}) == 1 and len(table[0]) < 120  # content-sized, not COLUMNS or 80
    assert str(music_wav()) in result.stdout and max(widths) == len(table[0])  # the path whole, nothing cut


def test_the_readme_headline_quotes_the_model_card():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    headline = readme.split("\n\n")[1]
    card = readme.split("## The default model (model card)")[1]
    expected = re.search(r"valence ([\d.]+) %, arousal ([\d.]+) %, quadrant macro-F1 ([\d.]+) %", card).groups()
    quoted = re.search(r"valence right for ([\d.]+) % of songs and arousal for ([\d.]+) % \(quadrant macro-F1\s+"
                       r"([\d.]+) %", headline)
    assert quoted and quoted.groups() == expected, headline
