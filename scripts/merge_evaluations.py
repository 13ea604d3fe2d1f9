"""Merge `mer-live evaluate` reports run on disjoint folds (``--run-folds``) into one report.

    python scripts/merge_evaluations.py OUT_DIR A/evaluation.json B/evaluation.json ...

The reports must share the protocol (fold count, seed), settings and rows; their fold rows are joined in
fold order and summarised again, so folds 1-3 and 4-5 run in two processes make the 5-fold report.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from mer_live.train.evaluate import folds_note, markdown_table, summarise, write_report

SAME = ("n_songs", "folds", "train_share", "audio", "model", "train", "song")  # train_share: absent before it


def merge(reports: list[dict]) -> dict:
    first = reports[0]
    for other in reports[1:]:
        for key in SAME:
            if other.get(key) != first.get(key):
                raise SystemExit(f"the reports differ in {key!r}: not one study")
    merged = []
    for i, row in enumerate(first["results"]):
        parts = [report["results"][i] for report in reports]
        key = (row["segment_seconds"], row["method"], row["aggregation"])
        if any((p["segment_seconds"], p["method"], p["aggregation"]) != key for p in parts):
            raise SystemExit(f"the reports' rows differ at row {i + 1}: not one study")
        folds = sorted(zip((f for p in parts for f in p["folds"]), (f for p in parts for f in p["predictions"])),
                       key=lambda pair: pair[0]["fold"])
        numbers = [f["fold"] for f, _ in folds]
        if len(set(numbers)) < len(numbers):
            raise SystemExit(f"fold {numbers} appears twice: merge reports of disjoint folds")
        merged.append({**row, "summary": summarise([f for f, _ in folds]), "folds": [f for f, _ in folds],
                       "predictions": [p for _, p in folds], "seconds": sum(p["seconds"] for p in parts)})
    numbers = [f["fold"] for f in merged[0]["folds"]]
    protocol = re.sub(r", (first \d+ of the \d+ folds|folds [\d, ]+ of the \d+) only", "", first["protocol"])
    protocol = protocol.replace(f"(seed {first['train']['seed']})",
                                f"(seed {first['train']['seed']}){folds_note(numbers, first['folds'])}", 1)
    return {**first, "protocol": protocol, "results": merged}


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    reports = [json.loads(Path(p).read_text()) for p in argv[1:]]
    merged = merge(reports)
    commands = "; ".join(r["command"] for r in reports)
    json_path, md_path = write_report({k: v for k, v in merged.items() if k != "command"}, Path(argv[0]), commands)
    print(markdown_table(merged))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
