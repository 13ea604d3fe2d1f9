"""A telephone view at test time, scored on the same fold networks, paired per fold, without training again.

    mer-live evaluate ... --save-outputs DIR      # every fold keeps its network and what it gives every segment
    python scripts/test_time_views.py DIR --dataset 4q --root path/to/dataset [--out views.json]

The idea: a song heard through a telephone's band and the same song heard clean differ in the bands a telephone
cuts, so labeling every input also through that band ("canonical" input) should bring the two answers together.
Every song is labeled as heard and through the band (300-3400 Hz, applied to its log-mel as each mel band's mean
power gain of a 4th-order Butterworth band-pass, the ``phone`` condition's filter: no second decode or front end),
and the two are averaged with weight W on the telephone view, either

- ``song``: the song SVM's probabilities of the two,
- ``segment``: the segments' outputs (probabilities and embeddings) before the song statistics, or
- ``segment, svm refit``: the same with the song SVM refit on the training songs' averaged statistics.

A condition's songs get the same view (so "phone" is the band heard twice). Every row is paired with the shipped
song SVM on the same network ("svm": the clean songs and their first recording, statistics at the training hop),
refit on the run's saved outputs: its rows equal the run's report. Only the telephone view goes through the network
again, read back from the saved weights (checked once per fold against a song's saved outputs).

A condition the run did not save (``--conditions late``, say: any of ``evaluate --conditions``) is heard by the same
network too, so its rows come without training again; ``--weights ''`` scores the shipped SVM alone.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

import numpy as np
from scipy import signal
from song_aggregators import Outputs, report, row_name, scored, segment_outputs, statistics

from mer_live.aggregate import SongAggregator
from mer_live.config import TASKS, AudioConfig
from mer_live.errors import MerLiveError
from mer_live.nn.mel import mel_filterbank
from mer_live.train.command import conditioned_logmels, prepare_data
from mer_live.train.conditions import CONDITIONS, PHONE_BAND, known_condition
from mer_live.train.evaluate import fold_network
from mer_live.train.settings import DataConfig
from mer_live.train.trainer import Fitted, song_outputs


def telephone_gain(audio: AudioConfig) -> np.ndarray:
    """(n_mels, 1) each mel band's mean power gain through the telephone band-pass (its filterbank weights). The
    response is sampled on scipy's grid of ``n_freqs`` points below Nyquist, within 0.2 % of the STFT's bin
    frequencies (every gain within 0.005 of the exact bins'): the published study ran on this grid."""
    sos = signal.butter(4, PHONE_BAND, btype="bandpass", fs=audio.sample_rate, output="sos")
    _, response = signal.sosfreqz(sos, worN=audio.n_freqs, fs=audio.sample_rate)
    weights = mel_filterbank(audio).astype(np.float64)
    return ((weights @ np.abs(response) ** 2) / weights.sum(axis=1))[:, None]


def telephone_view(logmel: np.ndarray, audio: AudioConfig, gain: np.ndarray) -> np.ndarray:
    """The log-mel of the same audio through the band, from the log-mel alone (a filter scales each band's power)."""
    if audio.log_offset:
        mel = np.maximum(np.exp(logmel.astype(np.float64)) - audio.log_floor, 0.0)
        return np.log(gain * mel + audio.log_floor).astype(np.float32)
    return np.log(np.maximum(gain * np.exp(logmel.astype(np.float64)), audio.log_floor)).astype(np.float32)


def mixed(a: Outputs, b: Outputs, w: float) -> Outputs:
    """Segment outputs ``(1 - w) a + w b``, song by song."""
    return ([(1 - w) * x + w * y for x, y in zip(a[0], b[0])],
            [None if x is None else (1 - w) * x + w * y for x, y in zip(a[1], b[1])])


def fold_scores(path: Path, data: DataConfig, weights: tuple[float, ...], only: tuple[str, ...] = ()
                ) -> dict[str, dict]:
    """{row: {metric: value}} of one fold: the shipped SVM and every view's rows, at every hop and condition
    saved (``only``: these conditions)."""
    z = np.load(path)
    net = fold_network(path.with_suffix(".pt"))
    audio, theta, seed = net.audio, float(z["theta"]), int(z["seed"])
    if net.config.pretrained:
        raise SystemExit(f"{path}: a view changes the log-mel; this network reads cached body features")
    embedding = any(k.endswith("/embeddings") for k in z.files)
    _, clips, clean = prepare_data(data, audio, quiet=True)
    keys = list(dict.fromkeys(k.rsplit("/", 1)[0] for k in z.files if k.count("/") == 3))  # <set>/<version>/hop <s>
    versions = {part: list(dict.fromkeys(k.split("/")[1] for k in keys if k.startswith(f"{part}/")))
                for part in ("train", "test")}  # in saved order: the first recording first
    recording = next((v for v in versions["train"] if v != "clean"), None)
    conditions = [v for v in versions["test"] if v != "clean" and (not only or v in only)]
    unsaved = [c for c in only if c not in versions["test"]]  # the network hears them below
    unknown = sorted(c for c in unsaved if not known_condition(c))
    if unknown:
        raise SystemExit(f"{path}: --conditions {','.join(unknown)}: neither saved nor one of {', '.join(CONDITIONS)} "
                         "(or several joined by +)")
    conditions += unsaved
    hops = sorted({float(k.split("/hop ")[1]) for k in keys})
    train_hop = float(z["training_hop"])
    fitted_on = ["clean", *([recording] if recording else [])]  # the shipped SVM's songs, as the run fit it
    heard = {v: clean if v == "clean" else conditioned_logmels(data, audio, clips, v, quiet=True)
             for v in [*fitted_on, *conditions]}
    gain = telephone_gain(audio)

    def through(mels: list[np.ndarray], hop: float) -> Outputs:
        fitted = Fitted(net=net, aggregator=None, method="naive", audio=audio.replace(segment_hop_seconds=hop),
                        history=[], gmm_records={}, val_indices=[])
        return song_outputs(fitted, mels, embedding)

    def saved(part: str, version: str, hop: float) -> Outputs:
        return segment_outputs(z, f"{part}/{version}/hop {hop:g}", embedding)

    def outputs(part: str, version: str, hop: float) -> tuple[Outputs, Outputs | None]:
        """``part``'s songs heard through ``version``: the run's saved outputs (the network's, where the run saved
        none), and the network's through the band (None without ``weights``)."""
        mels = [heard[version][clips[i].path] for i in z[f"indices/{part}"]]
        plain = saved(part, version, hop) if f"{part}/{version}/hop {hop:g}/counts" in z else through(mels, hop)
        return plain, through([telephone_view(m, audio, gain) for m in mels], hop) if weights else None

    if [clips[i].path.name for i in z["indices/test"]] != list(z["songs/test"]):
        raise SystemExit(f"{path}: the dataset's clips are not the run's (its test songs differ)")
    first = z["indices/test"][0]  # the network read back hears a song as it did in the run
    if not np.allclose(through([clean[clips[first].path]], train_hop)[0][0], saved("test", "clean", train_hop)[0][0],
                       atol=1e-4):
        raise SystemExit(f"{path}: the saved network does not give its saved outputs (another dataset or cache?)")

    train = [outputs("train", v, train_hop) for v in fitted_on]
    y = np.concatenate([z["labels/train"]] * len(fitted_on))

    def svm(view: float | None) -> SongAggregator:  # fit on the plain statistics, or on the view's at weight ``view``
        x = [statistics(plain if view is None else mixed(plain, band, view), theta) for plain, band in train]
        return SongAggregator(list(TASKS), seed=seed).fit(np.concatenate(x), y)

    shipped, refit = svm(None), {w: svm(w) for w in weights}
    truth, scores = z["labels/test"], {}
    for hop in hops:
        probs: dict[tuple[str, str], np.ndarray] = {}
        for condition in ["clean", *conditions]:
            plain, band = outputs("test", condition, hop)
            probs["svm", condition] = shipped.predict_proba(statistics(plain, theta))
            for w in weights:
                probs[f"song, telephone {w:g}", condition] = ((1 - w) * probs["svm", condition]
                                                              + w * shipped.predict_proba(statistics(band, theta)))
                both = statistics(mixed(plain, band, w), theta)
                probs[f"segment, telephone {w:g}", condition] = shipped.predict_proba(both)
                probs[f"segment, svm refit, telephone {w:g}", condition] = refit[w].predict_proba(both)
        for (name, condition), p in probs.items():
            scores[row_name(name, f"{hop:g}", condition)] = scored(truth, p, probs[name, "clean"])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", type=Path, help="a --save-outputs folder (each fold's .npz and .pt)")
    parser.add_argument("--dataset", required=True, help="the run's --dataset")
    parser.add_argument("--root", type=Path, help="the run's --root")
    parser.add_argument("--cache-dir", type=Path, help="the run's --cache-dir, if it had one")
    parser.add_argument("--weights", default="0.25,0.5",
                        help="weights of the telephone view, e.g. 0.25,0.5 ('': the shipped SVM's rows alone)")
    parser.add_argument("--conditions", default="",
                        help="only these conditions, e.g. room,phone; one the run did not save (late) is heard by "
                             "its network")
    parser.add_argument("--out", type=Path, help="also write the table and per-fold figures as JSON")
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.9's deprecations of SVC
    paths = sorted(args.outputs.glob("*-fold*.npz"), key=lambda p: int(re.search(r"fold(\d+)", p.name)[1]))
    missing = [p.with_suffix(".pt").name for p in paths if not p.with_suffix(".pt").is_file()]
    if not paths or missing:
        raise SystemExit(f"{args.outputs}: no *-fold<k>.npz with its .pt beside it (run mer-live evaluate with "
                         f"--save-outputs){'; missing ' + ', '.join(missing) if missing else ''}")
    try:
        weights = tuple(float(w) for w in args.weights.split(",") if w.strip())
    except ValueError:
        raise SystemExit(f"--weights takes numbers like 0.25,0.5: got {args.weights!r}") from None
    data = DataConfig(dataset=args.dataset, root=args.root, cache_dir=args.cache_dir)
    only = tuple(c for c in args.conditions.split(",") if c)
    folds = {}
    for path in paths:  # each fold's scores are kept beside its outputs: a study stopped halfway keeps its folds
        kept, settings = path.with_suffix(".views.json"), {"weights": weights, "conditions": only}
        if kept.is_file() and json.loads(kept.read_text())["settings"] == json.loads(json.dumps(settings)):
            scores = json.loads(kept.read_text())["scores"]
        else:
            try:
                scores = fold_scores(path, data, weights, only)
            except MerLiveError as exc:
                raise SystemExit(str(exc)) from None
            kept.write_text(json.dumps({"settings": settings, "scores": scores}))
        folds[int(re.search(r"fold(\d+)", path.name)[1])] = scores
    report(folds, args.outputs, args.out, first="labeling")


if __name__ == "__main__":
    main()
