"""scripts/hard_songs.py on the evaluation reports the repository ships: real predictions of real folds."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np

from tests.conftest import REPO

REPORTS = REPO / "docs" / "evaluation"
DEFAULT = f"{REPORTS / 'mn04-default-svm-copies' / 'evaluation.json'}:naive:svm (1 copies) @ hop 1 s"
MUSICNN = f"{REPORTS / 'musicnn-msd-3s-naive-rerun' / 'evaluation.json'}:naive:svm"


def hard_songs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "hard_songs.py"), *args], capture_output=True,
                          text=True, env={"PYTHONPATH": str(REPO)}, timeout=120)


def counts(stdout: str, task: str) -> tuple[int, int, int, float, float]:
    """(right in every report, wrong in every report, mixed, mean accuracy, oracle) from a task's line."""
    found = re.search(rf"^{task}: right in every report (\d+), wrong in every report (\d+), mixed (\d+); "
                      r"mean accuracy ([\d.]+) %, per-song oracle ([\d.]+) %$", stdout, re.MULTILINE)
    assert found, stdout
    return int(found[1]), int(found[2]), int(found[3]), float(found[4]), float(found[5])


def test_one_report_twice_has_no_mixed_songs_and_misses_what_it_missed():
    result = hard_songs(DEFAULT, DEFAULT, "--list", "3")
    assert result.returncode == 0, result.stderr
    path, method, aggregation = DEFAULT.rsplit(":", 2)
    row = next(r for r in json.loads(open(path).read())["results"] if r["aggregation"] == aggregation)
    labels = np.concatenate([np.array(p["labels"]) for p in row["predictions"]])
    missed = (np.concatenate([np.array(p["probs"]) for p in row["predictions"]]) > 0.5) != labels
    for t, task in enumerate(("valence", "arousal")):
        right, wrong, mixed, accuracy, oracle = counts(result.stdout, task)
        assert (right, wrong, mixed) == (len(labels) - missed[:, t].sum(), missed[:, t].sum(), 0)
        assert accuracy == oracle == round(100 * (1 - missed[:, t].mean()), 1)
    assert len([line for line in result.stdout.splitlines() if line.startswith("  MT")]) == 6  # 3 per task


def test_two_networks_split_the_songs_and_the_oracle_is_above_both():
    result = hard_songs(DEFAULT, MUSICNN)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("400 songs in all 2 reports")
    for task in ("valence", "arousal"):
        right, wrong, mixed, accuracy, oracle = counts(result.stdout, task)
        assert right + wrong + mixed == 400 and mixed > 0
        assert oracle == round(100 * (1 - wrong / 400), 1) and oracle > accuracy


def test_a_missing_row_is_one_line():
    result = hard_songs(DEFAULT, f"{REPORTS / 'mn04-heads' / 'evaluation.json'}:naive:no such row")
    assert result.returncode == 1 and "no row naive/no such row" in result.stderr and "Traceback" not in result.stderr
