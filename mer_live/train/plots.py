"""PNG plots of a run: training curves and the GMM separation of normalised losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: list[dict], tasks: list[str], path: Path) -> None:
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [row["loss"] for row in history], label="total")
    for key in ("lx", "lu", "kl"):
        if any(row.get(key) for row in history):
            axes[0].plot(epochs, [row[key] for row in history], label=key)
    axes[0].set_title("training loss")
    for task in tasks:
        axes[1].plot(epochs, [row.get(f"val_{task}_song_acc", np.nan) for row in history], label=task)
        axes[2].plot(epochs, [row[f"clean_{task}"] for row in history], label=task)
    held_out = any(f"val_{task}_song_acc" in row for row in history for task in tasks)
    axes[1].set_title("validation song accuracy (mean aggregation)" if held_out else "no validation songs held out")
    axes[2].set_title("share of segments judged clean")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gmm_separation(records: dict[int, dict], task: str, path: Path) -> None:
    """Histogram of normalised per-segment losses with the two fitted Gaussians: a row per class
    (or one pooled row), a column per chosen epoch."""
    plt = _pyplot()
    epochs = sorted(records)
    groups = sorted({g for epoch in epochs for g in records[epoch][task]})
    fig, axes = plt.subplots(len(groups), len(epochs), figsize=(4.2 * len(epochs), 3.2 * len(groups)),
                             squeeze=False)
    grid = np.linspace(0, 1, 300)
    for row, group in enumerate(groups):
        for ax, epoch in zip(axes[row], epochs):
            rec = records[epoch][task].get(group)
            if rec is None:
                ax.axis("off")
                continue
            ax.hist(rec["normalised_losses"], bins=60, range=(0, 1), density=True, color="0.75")
            order = np.argsort(rec["means"])
            for k, (name, color) in zip(order, (("clean", "tab:green"), ("noisy", "tab:red"))):
                mean, var, weight = rec["means"][k], rec["variances"][k], rec["weights"][k]
                pdf = weight * np.exp(-((grid - mean) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)
                ax.plot(grid, pdf, color=color, label=f"{name} (mean {mean:.2f})")
            ax.set_title(f"{task} {group}, epoch {epoch + 1}")
            ax.set_xlabel("normalised CE loss")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
