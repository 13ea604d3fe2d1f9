"""Per-update compute latency across segment lengths: ONNX Runtime (incremental and one graph,
1 and 2 threads) against PyTorch eager in the same run, CUDA with IOBinding where there is one.

An update is what the live path does every hop: window the new hop, run the front end on it
(incremental) or the whole window (one graph), the backbone, the running statistics and the
aggregator. Each is timed through the real ``Stream``; the graphs are wrapped to split the
time into parts. Algorithmic latency (a window must fill) is the segment length itself and is
reported apart; the real-time factor is compute / hop.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks import bundles, common
from mer_live.api import Model, Stream
from mer_live.runtime.bundle import Bundle
from mer_live.runtime.sessions import CUDA, open_session
from mer_live.runtime.stages import Stages

TARGET_P99_MS = 20.0
RUNTIMES = ("ort-incremental", "ort-full", "torch-eager")
MODELS = ("fast", "default", "musicnn", "compact")  # packaged models, drawn when this checkout has them
SMALL_ARCHS = ("compact", "mn04")  # cheap enough for --repeats updates; p99 of the packaged tiers needs them


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_common_arguments(parser)
    bundles.add_bundle_arguments(parser)
    parser.add_argument("--lengths", default="1,2,3,4,5", help="segment lengths in seconds (comma list)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="packaged models (comma list; one not in this checkout is skipped): each at its own "
                             "segment length, untrained copies of its configuration at the other lengths")
    parser.add_argument("--archs", default="",
                        help="more architectures as untrained stand-ins (comma list): compact, vgg16, musicnn-msd, "
                             "musicnn-mtt, vgg-msd, vgg-mtt")
    parser.add_argument("--threads", default="1,2", help="CPU thread counts (comma list)")
    parser.add_argument("--repeats", type=int, default=300,
                        help="timed updates per configuration (the small models: compact and mn04, the packaged tiers)")
    parser.add_argument("--vgg-repeats", type=int, default=60,
                        help="timed updates per configuration (the large models: musicnn and the VGGs)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed updates first")
    parser.add_argument("--no-peers", action="store_true", help="skip vibenet (re-run on the newest 3 s window)")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw latency.png from the results directory's latency.json")


class Timed:
    """Wraps a graph (any callable) and adds its wall time to ``elapsed``."""

    def __init__(self, fn) -> None:
        self.fn, self.elapsed = fn, 0.0

    def __call__(self, x):
        t0 = time.perf_counter()
        out = self.fn(x)
        self.elapsed += time.perf_counter() - t0
        return out


class TorchStages(Stages):
    """``Stages`` whose one-graph segment path is PyTorch eager SegmentNet: streamed in ``full`` mode it
    runs on each window with the same statistics and aggregator graph, so the two runtimes are timed
    through identical code."""

    def __init__(self, bundle: Bundle, device: str = "cpu") -> None:
        import torch

        from mer_live.nn.model import SegmentNet, SegmentProbabilities

        super().__init__(bundle, provider="cpu", threads=1)
        self.torch, self.device = torch, torch.device(device)
        model_config = bundles.model_config(bundle)
        net = SegmentNet(bundle.audio, model_config)
        self.embedding = bundle.embedding_dims > 0  # the graph then also returns what the aggregator summarises
        self.net = SegmentProbabilities(net, model_config.tasks, self.embedding).eval().to(self.device)
        self.provider = "CUDA" if self.device.type == "cuda" else "CPU"

    def reference(self):
        def forward(audio: np.ndarray) -> np.ndarray:
            with self.torch.inference_mode():
                out = self.net(self.torch.from_numpy(audio).to(self.device))
                return self.torch.cat(out, dim=1).cpu().numpy() if self.embedding else out.cpu().numpy()

        forward.provider = self.provider
        return forward

    def warm_up(self) -> None:
        segment = self.reference()
        for _ in range(3):
            segment(np.zeros((1, self.audio.segment_samples), np.float32))


def measure(stages: Stages, mode: str, audio: np.ndarray, repeats: int, warmup: int) -> dict:
    """Feed one hop at a time through a Stream; time each update and its graph parts."""
    timers = {name: Timed(getattr(stages, name)) for name in ("frontend", "backbone", "aggregator")}
    for name, timer in timers.items():
        setattr(stages, name, timer)
    if mode == "full":
        del timers["frontend"], timers["backbone"]
        reference = stages.reference
        stages.reference = lambda: timers.setdefault("segment", Timed(reference()))
    stream = Stream(stages, silence_reset=False, mode=mode)
    c = stages.audio
    pos = c.segment_samples - c.hop_samples
    stream.feed(audio[:pos])
    totals: list[float] = []
    parts: dict[str, list[float]] = {name: [] for name in timers}
    for i in range(warmup + repeats):
        block = audio[pos : pos + c.hop_samples]
        pos += c.hop_samples
        for timer in timers.values():
            timer.elapsed = 0.0
        t0 = time.perf_counter()
        updates = stream.feed(block, arrival=t0)
        elapsed = time.perf_counter() - t0
        if len(updates) != 1:
            raise RuntimeError(f"expected one update per hop, got {len(updates)}")
        if i >= warmup:
            totals.append(elapsed * 1e3)
            for name, timer in timers.items():
                parts[name].append(timer.elapsed * 1e3)
    total = common.summarize(totals)
    part_p50 = {name: common.summarize(v)["p50"] for name, v in parts.items()}
    part_p50["other"] = round(total["p50"] - sum(part_p50.values()), 4)  # windowing, statistics, Python
    return {"compute_ms": total, "parts_p50_ms": part_p50}


def _row(bundle: Bundle, model: str, runtime: str, threads: int | None, provider: str, result: dict) -> dict:
    """``model``: the packaged model's name (or the stand-in's architecture) the row is drawn under."""
    c = bundle.audio
    return {"model": model, "arch": bundles.arch_of(bundle), "segment_seconds": c.segment_seconds,
            "effective_segment_seconds": round(c.effective_segment_seconds, 4),
            "hop_seconds": round(c.effective_hop_seconds, 4),
            "algorithmic_latency_s": round(c.effective_segment_seconds, 4), "runtime": runtime,
            "threads": threads, "provider": provider, **result,
            "rtf_p99": round(result["compute_ms"]["p99"] / 1e3 / c.effective_hop_seconds, 5)}


def cpu_rows(bundle: Bundle, name: str, threads: int, audio: np.ndarray, repeats: int, warmup: int) -> list[dict]:
    """``name``: the model the rows are drawn under (a packaged model's name, or a stand-in's architecture)."""
    import torch

    rows = []
    for mode in ("incremental", "full"):
        model = Model(bundle, provider="cpu", threads=threads)
        model.warm_up()
        rows.append(_row(bundle, name, f"ort-{mode}", threads, model.provider,
                         measure(model.stages, mode, audio, repeats, warmup)))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        stages = TorchStages(bundle)
        stages.warm_up()
        rows.append(_row(bundle, name, "torch-eager", threads, "CPU", measure(stages, "full", audio, repeats, warmup)))
    finally:
        torch.set_num_threads(previous)
    return rows


def cuda_rows(bundle: Bundle, name: str, audio: np.ndarray, repeats: int, warmup: int) -> tuple[list[dict], str]:
    """Live updates on ORT-CUDA and torch-CUDA, and batched backbone throughput with IOBinding."""
    import onnxruntime as ort

    rows, notes = [], []
    if CUDA in ort.get_available_providers():
        model = Model(bundle, provider="cuda")
        model.warm_up()
        rows.append(_row(bundle, name, "ort-incremental", None, model.provider,
                         measure(model.stages, "incremental", audio, repeats, warmup)))
        rows.append(iobinding_row(bundle, name, repeats))
    else:
        notes.append("onnxruntime has no CUDAExecutionProvider here")
    try:
        import torch

        if torch.cuda.is_available():
            stages = TorchStages(bundle, "cuda")
            stages.warm_up()
            timed = measure(stages, "full", audio, repeats, warmup)
            rows.append(_row(bundle, name, "torch-eager", None, "CUDA", timed))
        else:
            notes.append("torch sees no CUDA GPU")
    except ImportError:
        notes.append("torch not installed")
    return rows, "; ".join(notes)


def iobinding_row(bundle: Bundle, name: str, repeats: int, batch: int = 64) -> dict:
    """backbone.onnx on a batch of log-mel segments already on the GPU (IOBinding, no host copies)."""
    import onnxruntime as ort

    c = bundle.audio
    session = open_session(bundle.file("backbone.onnx"), "cuda")
    x = np.random.default_rng(0).normal(-4, 4, (batch, c.n_mels, c.segment_frames)).astype(np.float32)
    binding = session.io_binding()
    binding.bind_ortvalue_input("logmel", ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    binding.bind_output("probs", "cuda")
    times = []
    for i in range(10 + repeats):
        t0 = time.perf_counter()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        if i >= 10:
            times.append((time.perf_counter() - t0) * 1e3)
    result = {"compute_ms": common.summarize(times), "parts_p50_ms": {},
              "batch": batch, "segments_per_s": round(batch / (np.median(times) / 1e3), 1)}
    return _row(bundle, name, f"ort-iobinding-batch{batch}", None, "CUDA", result)


def vibenet_rows(threads: list[int], repeats: int, warmup: int, seconds: float = 3.0) -> tuple[list[dict], str]:
    """vibenet's compute for one live update: its front end and graph on the newest window, in the peers' venv
    (``peer_vibenet_latency.py``); no rows, and why, when the peers cannot be installed."""
    import json
    import subprocess

    from benchmarks import peers

    why = peers.ensure(log=lambda line: common.console.print(line, highlight=False, markup=False))
    if why:
        return [], why
    script = Path(__file__).with_name("peer_vibenet_latency.py")
    done = subprocess.run([str(peers.python()), str(script), "--seconds", str(seconds), "--threads",
                           ",".join(map(str, threads)), "--repeats", str(repeats), "--warmup", str(warmup)],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return [], f"vibenet failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    rows = []
    for t, times in json.loads(done.stdout).items():
        total = common.summarize(times)
        rows.append({"model": "vibenet", "arch": "vibenet (EfficientNet)", "segment_seconds": seconds,
                     "effective_segment_seconds": seconds, "hop_seconds": 1.0, "algorithmic_latency_s": seconds,
                     "runtime": "ort-full", "threads": int(t), "provider": "CPU", "compute_ms": total,
                     "parts_p50_ms": {}, "rtf_p99": round(total["p99"] / 1e3, 5)})
    return rows, ""


def ratios(rows: list[dict]) -> list[dict]:
    """PyTorch eager p50 / ORT p50 for each (model, length, threads) on the CPU."""
    index = {(r["model"], r["segment_seconds"], r["threads"], r["runtime"]): r for r in rows if r["provider"] == "CPU"}
    out = []
    for (model, seconds, threads, runtime), row in index.items():
        if runtime != "torch-eager":
            continue
        torch_p50 = row["compute_ms"]["p50"]
        entry = {"model": model, "arch": row["arch"], "segment_seconds": seconds, "threads": threads}
        for ort_runtime in ("ort-incremental", "ort-full"):
            other = index.get((model, seconds, threads, ort_runtime))
            if other:
                entry[f"torch_over_{ort_runtime.replace('-', '_')}"] = round(torch_p50 / other["compute_ms"]["p50"], 2)
        out.append(entry)
    return out


def print_table(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="per-update compute latency (ms); algorithmic latency = segment length")
    for col in ("model", "seg s", "runtime", "thr", "prov", "p50", "p95", "p99", "RTF p99",
                "front end", "backbone/graph", "aggregator", "other"):
        table.add_column(col, justify="right")
    for r in rows:
        m, p = r["compute_ms"], r["parts_p50_ms"]
        graph = p.get("backbone", p.get("segment"))
        table.add_row(r["model"], f"{r['segment_seconds']:g}", r["runtime"], str(r["threads"] or "-"), r["provider"],
                      common.fmt(m["p50"], 2), common.fmt(m["p95"], 2), common.fmt(m["p99"], 2),
                      f"{r['rtf_p99']:.4f}", common.fmt(p.get("frontend"), 2), common.fmt(graph, 2),
                      common.fmt(p.get("aggregator"), 2), common.fmt(p.get("other"), 2))
    common.console.print(table)


def plot(rows: list[dict], path) -> None:
    """One panel per model, lines over segment lengths (p50 solid, p99 dashed) per runtime, and the target."""
    models = list(dict.fromkeys(r.get("model", r["arch"]) for r in rows))
    fig, axes = common.figure(1, len(models), figsize=(5 * len(models) + 2.2, 4.4), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models):
        series: dict[str, list[dict]] = {}
        for r in rows:
            if r.get("model", r["arch"]) == model and "batch" not in r:
                series.setdefault(f"{r['runtime']} {r['provider']}" + (f" {r['threads']}t" if r["threads"] else ""),
                                  []).append(r)
        for name, points in sorted(series.items()):
            points.sort(key=lambda r: r["segment_seconds"])
            x = [r["segment_seconds"] for r in points]
            line, = ax.plot(x, [r["compute_ms"]["p50"] for r in points], marker="o", label=f"{name} p50")
            ax.plot(x, [r["compute_ms"]["p99"] for r in points], ls="--", marker=".", color=line.get_color(),
                    alpha=0.6)
        ax.axhline(TARGET_P99_MS, color="red", lw=1, ls=":", label=f"target: p99 <= {TARGET_P99_MS:g} ms")
        arch = next(r["arch"] for r in rows if r.get("model", r["arch"]) == model)
        ax.set(title=f"{model} ({arch}): compute per update (dashed: p99)",
               xlabel="segment length (s) = algorithmic latency", ylabel="ms per update (hop 1 s)", yscale="log",
               xlim=(0.5, 5.5), xticks=[1, 2, 3, 4, 5])
        ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # one legend: the same lines
    common.save_figure(fig, path)


def chosen_bundles(args: argparse.Namespace, work, lengths: list[float], models: list[str], archs: list[str]
                   ) -> dict[tuple[str, float], Bundle]:
    """(model, segment seconds) -> bundle: the packaged model at its own length, an untrained copy of its
    configuration at the others; a bundle that hops more than a second (``fast``: its windows do not overlap)
    at its own length and hop only; ``--archs`` as stand-ins; ``--bundle`` alone."""
    from mer_live.runtime.bundle import PACKAGED, load_bundle

    if args.bundle is not None:
        bundle = load_bundle(args.bundle)
        return {(bundles.arch_of(bundle), bundle.audio.segment_seconds): bundle}
    chosen: dict[tuple[str, float], Bundle] = {}
    for model in models:
        folder = PACKAGED.get(model, PACKAGED["default"].parent / model)
        if not (folder / "bundle.json").is_file():
            common.console.print(f"{model}: not packaged in this checkout, skipped", highlight=False)
            continue
        own = load_bundle(folder)
        if own.audio.effective_hop_seconds > 1.0:
            chosen[(model, own.audio.segment_seconds)] = own
            continue
        for seconds in lengths:
            fits = own.audio.segment_seconds == seconds
            chosen[(model, seconds)] = own if fits else bundles.stand_in(work, seconds, like=own)
    for arch in archs:
        for seconds in lengths:
            chosen[(arch, seconds)] = bundles.stand_in(work, seconds, arch)
    return chosen


def run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.replot:
        import json

        rows = json.loads((args.results_dir / "latency.json").read_text())["rows"]
        plot(rows, args.results_dir / "latency.png")
        return 0
    lengths = [float(s) for s in args.lengths.split(",")]
    models = [m for m in args.models.split(",") if m]
    archs = [a for a in args.archs.split(",") if a]
    threads = [int(s) for s in args.threads.split(",")]
    repeats, vgg_repeats, warmup = args.repeats, args.vgg_repeats, args.warmup
    if args.quick:  # the cheapest model only
        models = ["compact"] if "compact" in models or not (models or archs) else models[:1]
        lengths, archs, threads, repeats, vgg_repeats, warmup = lengths[:2], archs[:0], threads[:1], 10, 5, 2
    rows: list[dict] = []
    gpu_note = ""
    with bundles.workdir(args.cache) as work:
        chosen = chosen_bundles(args, work, lengths, models, archs)
        for (model, seconds), bundle in chosen.items():
            arch = bundles.arch_of(bundle)
            n = repeats if arch in SMALL_ARCHS else vgg_repeats
            c = bundle.audio
            audio = common.music(c.effective_segment_seconds + (n + warmup + 2) * c.effective_hop_seconds,
                                 c.sample_rate)
            common.console.print(f"[{model} {seconds:g} s] {bundles.describe(bundle)}", highlight=False, markup=False)
            for t in threads:
                rows += cpu_rows(bundle, model, t, audio, n, warmup)
            gpu, gpu_note = cuda_rows(bundle, model, audio, n, warmup)
            rows += gpu
        peer_note = "skipped (--no-peers)"
        if not args.no_peers and not args.quick and args.bundle is None:
            peer_rows, peer_note = vibenet_rows(threads, vgg_repeats, warmup)
            rows += peer_rows
    print_table(rows)
    ratio_rows = ratios(rows)
    for r in ratio_rows:
        common.console.print(f"PyTorch eager / ORT ({r['model']} {r['segment_seconds']:g} s, {r['threads']} thread): "
                             f"incremental x{r.get('torch_over_ort_incremental')}, one graph "
                             f"x{r.get('torch_over_ort_full')}", highlight=False)
    default_threads = min(threads)
    target = [r for r in rows if r["arch"] == "compact" and r["runtime"] == "ort-incremental"
              and r["threads"] == default_threads]
    met = bool(target) and all(r["compute_ms"]["p99"] <= TARGET_P99_MS for r in target)
    plot(rows, args.results_dir / "latency.png")
    common.write_result(args.results_dir, "latency", argv, {
        "what": "per-update compute of the live path (window + front end + backbone + statistics + aggregator) "
                "per hop; algorithmic latency = segment length; RTF = compute / hop; each packaged model at its "
                "own segment length, untrained copies of its configuration (a pretrained view included) at the other "
                "lengths",
        "repeats": {"compact and mn04": repeats, "others": vgg_repeats, "warmup": warmup},
        "target": {"compact_ort_incremental_p99_ms": TARGET_P99_MS, "threads": default_threads, "met": met},
        "bundles": sorted({f"{bundles.describe(b)}" for b in chosen.values()}),
        "gpu": gpu_note or "measured", "vibenet": peer_note or "measured: its front end and graph on the newest "
        "3 s window, once a second", "rows": rows, "ratios": ratio_rows,
    })
    return 0
