#!/usr/bin/env bash
# The segment-length sweep of the README: 5-fold cross-validation on 4q-dev for 1-5 s segments,
# SSSL vs the naive segment baseline (and the clip-level baseline once, at 3 s), then the
# accuracy/latency figure. Two single-thread evaluations run side by side, one per CPU core;
# about 100 minutes on a 2-core CPU. Reports: runs/eval-<L>s/evaluation.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${MER_LIVE_4Q_ROOT:-../shared/data/4q-dev/MER_audio_taffc_dataset}
BUDGET=(--epochs 8 --warmup-epochs 3 --segments-per-epoch 2000 --threads 1)

lengths() {
  for seconds in "$@"; do
    methods=sssl,naive
    [ "$seconds" = 3 ] && methods=sssl,naive,clip
    .venv/bin/mer-live evaluate --dataset 4q --root "$ROOT" --folds 5 --segment-seconds "$seconds" \
      --methods "$methods" "${BUDGET[@]}" --out "runs/eval-${seconds}s"
  done
}

mkdir -p runs
lengths 3 2 5 > runs/sweep-a.log 2>&1 &
lengths 1 4 > runs/sweep-b.log 2>&1 &
wait
.venv/bin/mer-live bench accuracy --report runs/eval-{1,2,3,4,5}s/evaluation.json
