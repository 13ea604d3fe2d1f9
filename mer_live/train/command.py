"""`mer-live train` as a command: the data it reads, the console and progress bars, the run directory and
its plots, around ``trainer.fit``. Under data-parallel training only the first process prints and writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mer_live.config import TASKS, AudioConfig, SongConfig
from mer_live.errors import MerLiveError
from mer_live.nn.model import ModelConfig
from mer_live.train import rundir
from mer_live.train.cache import LogMelCache
from mer_live.train.comm import Communicator, Solo, pick_device
from mer_live.train.conditions import air_condition
from mer_live.train.datasets import Clip, Dataset, load_dataset
from mer_live.train.loop import LoopOptions
from mer_live.train.settings import DataConfig, RunSettings, TrainConfig
from mer_live.train.synth import make_synth_corpus
from mer_live.train.trainer import (
    Recipe,
    clip_labels,
    fit,
    model_inputs,
    song_horizon,
    verification_audio,
    with_moods,
)


def log_console(quiet: bool = False):
    """A stderr console whose log lines are not wrapped at 80 columns when stderr is a file or pipe."""
    import sys

    from rich.console import Console

    return Console(stderr=True, width=None if sys.stderr.isatty() else 200, quiet=quiet)


def prepare_data(data: DataConfig, audio: AudioConfig, quiet: bool = False
                 ) -> tuple[Dataset, list[Clip], dict[Path, np.ndarray]]:
    """Load the dataset and every clip's cached log-mel; undecodable clips are reported and skipped
    (``quiet``: no progress or log lines, as on every data-parallel process but the first)."""
    console = log_console(quiet)
    root = data.root
    if data.dataset == "synth":
        root = Path(root or "runs/synth")
        if not (root / "manifest.csv").is_file():
            make_synth_corpus(root, data.synth_clips, seconds=data.synth_seconds, sr=audio.sample_rate,
                              seed=data.seed, change_fraction=0.25)
    if root is None:
        raise MerLiveError(f"--root is required for --dataset {data.dataset}")
    dataset = load_dataset(data.dataset, root, data.thresholds or None)
    labeled = [c for c in dataset.clips if c.labels is not None and all(t in c.labels for t in TASKS)]
    if len(labeled) < 8:
        raise MerLiveError(f"{dataset.root}: only {len(labeled)} labeled clips found; training needs at least 8")
    logmels, failures = build_cache(LogMelCache(data.cache, audio), labeled, data.workers, console,
                                    f"log-mel cache ({len(labeled)} clips)")
    for path, reason in failures:
        console.print(f"[yellow]skipped[/] {path}: {reason}")
    clips = [c for c in labeled if c.path in logmels]
    console.log(f"{dataset.name}: {len(clips)} clips ({len(failures)} skipped, {len(dataset.skipped)} annotated "
                f"without audio); binarization {dataset.binarization}")
    return dataset, clips, logmels


def build_cache(cache: LogMelCache, clips: list[Clip], workers: int, console, description: str
                ) -> tuple[dict[Path, np.ndarray], list[tuple[Path, str]]]:
    """``cache.build`` behind a transient progress bar."""
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(description, total=len(clips))
        return cache.build(clips, workers=workers, progress=lambda done, total: bar.update(task, completed=done))


def conditioned_logmels(data: DataConfig, audio: AudioConfig, clips: list[Clip], condition: str,
                        quiet: bool = False) -> dict[Path, np.ndarray]:
    """Every clip's log-mel heard through ``condition`` (``LogMelCache``), cached like the clean ones."""
    logmels, failures = build_cache(LogMelCache(data.cache, audio, condition), clips, data.workers,
                                    log_console(quiet), f"log-mel cache, {condition} ({len(clips)} clips)")
    if failures:
        raise MerLiveError(f"{failures[0][0]}: decoded clean but not for {condition}: {failures[0][1]}")
    return logmels


def run_record(run: RunSettings, cfg: TrainConfig, audio: AudioConfig, model_config: ModelConfig, song: SongConfig,
               dataset: Dataset | None = None, clips: int = 0, device: str = "") -> dict:
    """config.json of a `mer-live train` run."""
    extra: dict = {"method": run.method}
    if dataset is not None:
        extra["dataset"] = {"name": dataset.name, "root": str(dataset.root), "clips": clips,
                            "binarization": dataset.binarization}
    if device:
        extra["device"] = device
    return rundir.run_config(audio, model_config, cfg.to_dict(), song, **extra)


def train_run(run: RunSettings, data: DataConfig, cfg: TrainConfig, audio: AudioConfig, model_config: ModelConfig,
              song: SongConfig, dataset: Dataset, clips: list[Clip], logmels: dict[Path, np.ndarray],
              comm: Communicator | None = None) -> Path:
    """`mer-live train`: fit on every clip and leave a complete run directory (the first process only,
    under data-parallel training ``comm``; default: this process alone)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mer_live.train import plots

    comm = comm or Solo(pick_device(cfg.device))
    first = comm.is_first
    console = log_console(quiet=not first)
    out = Path(run.out)
    device = comm.device
    log = console.log
    log(f"training {model_config.arch} ({run.method}) on {device.type}{comm.describe()}; "
        f"segments {audio.effective_segment_seconds:.3f} s every {audio.effective_hop_seconds:.3f} s")
    song = song.replace(horizon=song_horizon(logmels, audio))
    model_config = with_moods(model_config, clips, list(range(len(clips))), cfg)  # the record names its tags
    config = run_record(run, cfg, audio, model_config, song, dataset, len(clips), device.type)
    if run.resume:
        rundir.check_resume(out, config)
    if first:
        rundir.write_config(out, config)
    with comm.first_then_rest():
        inputs = model_inputs(logmels, audio, model_config, data.cache, log=log)
        augment = [model_inputs(logmels, audio, model_config, data.cache, g, log=log) for g in cfg.gain_augment_db]
        augment += [model_inputs(conditioned_logmels(data, audio, clips, air_condition(k, cfg.air_phone),
                                                     quiet=not first), audio,
                                 model_config, data.cache, log=log) for k in range(cfg.air_copies)]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not first) as bar:
        task = bar.add_task("epoch steps", total=1)
        options = LoopOptions(checkpoint=out / rundir.CHECKPOINT, resume=run.resume, log=log, comm=comm,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
        fitted = fit(clips, inputs, list(range(len(clips))), Recipe(audio, model_config, cfg, run.method, song),
                     options, augment)
    if not first:
        return out
    if fitted.aggregator is None:
        raise MerLiveError("the clip-level baseline has no song aggregator to export; use it with `evaluate`")
    if model_config.bodies > 1:  # each body kept its own loop checkpoint: the ensemble is the run's model
        rundir.save_checkpoint(out / rundir.CHECKPOINT, {"model": fitted.net.state_dict(),
                                                         "train_config": cfg.to_dict()})
    by_body = {}
    for row in fitted.history:
        by_body.setdefault(row.get("body", 1), []).append(row)
    held_out = list(fitted.val_indices)
    # the export's checks compare two implementations on real songs: without validation songs, training songs do
    checked = held_out or list(range(0, len(clips), max(1, len(clips) // 60)))[:60]
    best_epochs = [max(rows, key=lambda r: r.get("val_song_auc", 0))["epoch"] if held_out else rows[-1]["epoch"]
                   for rows in by_body.values()]
    metrics = {
        "history": fitted.history,
        "best_epoch": best_epochs[0] if len(best_epochs) == 1 else best_epochs,  # one per body in an ensemble
        "aggregator_best_params": fitted.aggregator.best_params,
        "aggregator_inner_accuracy": fitted.aggregator.inner_accuracy,  # optimistic with recordings: folds over rows
        "validation_songs": len(held_out),
    }
    if held_out:
        val_pred = fitted.aggregator.predict_proba(fitted.features[held_out]) > 0.5  # fit ran on clips 0..n-1
        val_true = clip_labels(clips, held_out)
        metrics["validation_svm_acc_note"] = "SVM fit on all songs including these; optimistic"
        metrics["validation_svm_acc"] = {t: float((val_pred[:, k] == val_true[:, k]).mean())
                                         for k, t in enumerate(song.tasks)}
    rundir.write_run(out, config, fitted.aggregator, metrics, verification_audio(clips, checked, audio),
                     fitted.features[checked])
    for body, rows in by_body.items():
        name = "training_curves.png" if len(by_body) == 1 else f"training_curves_body{body}.png"
        plots.training_curves(rows, list(song.tasks), out / rundir.PLOTS / name)
    if fitted.gmm_records:
        for t in song.tasks:
            plots.gmm_separation(fitted.gmm_records, t, out / rundir.PLOTS / f"gmm_{t}.png")
    console.log(f"run written to {out}")
    return out
