"""The per-epoch clean/noisy division: a two-component GMM on normalised per-segment losses."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

# DivideMix's settings [DivideMix repo]
GMM_MAX_ITER = 10
GMM_TOL = 1e-2
GMM_REG_COVAR = 5e-4


def normalise_losses(losses: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1]; a constant loss vector maps to zeros."""
    losses = np.asarray(losses, dtype=np.float64)
    span = losses.max() - losses.min()
    return (losses - losses.min()) / span if span > 0 else np.zeros_like(losses)


def fit_loss_gmm(normalised: np.ndarray, seed: int = 0) -> GaussianMixture:
    gmm = GaussianMixture(n_components=2, max_iter=GMM_MAX_ITER, tol=GMM_TOL, reg_covar=GMM_REG_COVAR,
                          random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 10 EM steps by design (DivideMix)
        return gmm.fit(normalised.reshape(-1, 1))


def clean_probability(losses: np.ndarray, seed: int = 0) -> tuple[np.ndarray, GaussianMixture, np.ndarray]:
    """Posterior of the low-mean component per segment; also the GMM and the normalised losses."""
    normalised = normalise_losses(losses)
    gmm = fit_loss_gmm(normalised, seed)
    clean_component = int(np.argmin(gmm.means_.ravel()))
    return gmm.predict_proba(normalised.reshape(-1, 1))[:, clean_component], gmm, normalised


def divide_losses(losses: np.ndarray, labels: np.ndarray | None, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Clean probability per segment from one GMM, or one GMM per class when ``labels`` are given.

    Per class matters when one class is harder: a pooled GMM can call most of it noisy and
    train on a clean set skewed to the easy class; per class, each class keeps its own clean
    share. Returns the clean probabilities and, per class (or "all"), the normalised losses and
    GMM parameters.
    """
    losses = np.asarray(losses, dtype=np.float64)
    clean = np.empty(len(losses))
    groups = {"all": np.arange(len(losses))} if labels is None else {
        f"class {c}": np.flatnonzero(labels == c) for c in np.unique(labels)}
    record = {}
    for name, idx in groups.items():
        if len(idx) < 2:  # nothing to separate: keep the label
            clean[idx] = 1.0
            continue
        clean[idx], gmm, normalised = clean_probability(losses[idx], seed)
        record[name] = {"normalised_losses": normalised, "means": gmm.means_.ravel().tolist(),
                        "variances": gmm.covariances_.ravel().tolist(), "weights": gmm.weights_.tolist()}
    return clean, record
