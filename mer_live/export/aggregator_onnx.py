"""The song aggregator as one ONNX graph: "features" float32 (n, f) -> "probs" float32 (n, tasks).

Why not skl2onnx's SVC converter as is: it emits ONNX-ML ``SVMClassifier``, which ONNX Runtime
evaluates in float32. With C=100 and a small gamma (both on the aggregator's grid) the RBF
decision value is a sum of large dual coefficients that nearly cancel, and float32 left P(high)
1.6e-5 away from ``predict_proba`` on a synthetic aggregator, over the 1e-5 the bundle
promises. Feeding skl2onnx a double input does not help: it still casts to a float
``SVMClassifier``. So the graph is written here, in float64 throughout, from the fitted
pipeline's own parameters, and exported with the same TorchScript exporter as the model.

Why not a bare Platt sigmoid either: sklearn's binary ``predict_proba`` runs libsvm's
pairwise-coupling iteration (``multiclass_probability``, started at 1/2 and stopped once its
error is below 0.005/k), which leaves P(high) up to ~3e-3 away from the sigmoid. The graph
replays that iteration for k=2. From the start p=(1/2, 1/2) it stops after at most two rounds
for every clipped pairwise probability in [1e-7, 1 - 1e-7]; ``COUPLING_ROUNDS`` unrolls more,
masked, so rounds after the stop change nothing. The result matches ``predict_proba`` to
~1e-15 before the final cast to float32.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn

from mer_live.aggregate import SongAggregator

INPUT = "features"
OUTPUT = "probs"
OPSET = 17
MIN_PROB = 1e-7  # libsvm clips pairwise probabilities to [MIN_PROB, 1 - MIN_PROB]
COUPLING_EPS = 0.005 / 2  # libsvm's stopping tolerance for k = 2 classes
COUPLING_ROUNDS = 4


def _parts(pipeline: Pipeline) -> tuple[StandardScaler, SVC]:
    """The scaler and RBF SVC of one task's pipeline, refusing anything else."""
    steps = [step for _, step in pipeline.steps]
    if len(steps) != 2 or not isinstance(steps[0], StandardScaler) or not isinstance(steps[1], SVC):
        raise ValueError("aggregator pipelines must be StandardScaler -> SVC")
    scaler, svc = steps
    if svc.kernel != "rbf" or not getattr(svc, "probability", False):
        raise ValueError("aggregator SVC must use the rbf kernel with probability=True")
    if list(svc.classes_) != [0, 1]:
        raise ValueError(f"aggregator SVC classes must be [0, 1] (low, high), got {list(svc.classes_)}")
    return scaler, svc


def _double(values: np.ndarray | float) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


class TaskSVC(nn.Module):
    """One task: standardise, RBF decision value, Platt sigmoid, libsvm coupling -> P(high)."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        scaler, svc = _parts(pipeline)
        with warnings.catch_warnings():  # sklearn 1.9 deprecates probA_/probB_ with probability=True
            warnings.simplefilter("ignore", FutureWarning)
            prob_a, prob_b = float(np.ravel(svc.probA_)[0]), float(np.ravel(svc.probB_)[0])
        vectors = np.asarray(svc.support_vectors_, dtype=np.float64)
        self.register_buffer("mean", _double(scaler.mean_ if scaler.with_mean else 0.0))
        self.register_buffer("scale", _double(scaler.scale_ if scaler.with_std else 1.0))
        self.register_buffer("vectors_t", _double(vectors.T.copy()))
        self.register_buffer("vectors_sq", _double((vectors**2).sum(axis=1)))
        self.register_buffer("dual", _double(np.ravel(svc.dual_coef_)))
        self.register_buffer("intercept", _double(float(svc.intercept_[0])))
        self.register_buffer("gamma", _double(float(svc._gamma)))
        self.register_buffer("prob_a", _double(prob_a))
        self.register_buffer("prob_b", _double(prob_b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.scale
        sq_dist = (z * z).sum(dim=1, keepdim=True) - 2.0 * (z @ self.vectors_t) + self.vectors_sq
        decision = torch.exp(-self.gamma * torch.clamp(sq_dist, min=0.0)) @ self.dual + self.intercept
        # libsvm's decision value for a binary SVC is minus sklearn's; its sigmoid gives P(low | pair).
        r = torch.sigmoid(-(self.prob_a * -decision + self.prob_b))
        return _couple_two(torch.clamp(r, MIN_PROB, 1.0 - MIN_PROB))


def _couple_two(r: torch.Tensor) -> torch.Tensor:
    """libsvm ``multiclass_probability`` for k=2 with r = P(class 0 over 1): returns p[1]."""
    q00, q11, q01 = (1 - r) * (1 - r), r * r, -r * (1 - r)
    p0, p1 = torch.full_like(r, 0.5), torch.full_like(r, 0.5)
    for _ in range(COUPLING_ROUNDS):
        qp0, qp1 = q00 * p0 + q01 * p1, q01 * p0 + q11 * p1
        pqp = p0 * qp0 + p1 * qp1
        active = torch.maximum(torch.abs(qp0 - pqp), torch.abs(qp1 - pqp)) >= COUPLING_EPS
        # t = 0
        diff = (pqp - qp0) / q00
        n0, n1 = (p0 + diff) / (1 + diff), p1 / (1 + diff)
        pqp_n = (pqp + diff * (diff * q00 + 2 * qp0)) / (1 + diff) / (1 + diff)
        qp1_n = (qp1 + diff * q01) / (1 + diff)
        # t = 1
        diff = (pqp_n - qp1_n) / q11
        n0, n1 = n0 / (1 + diff), (n1 + diff) / (1 + diff)
        p0, p1 = torch.where(active, n0, p0), torch.where(active, n1, p1)
    return p1


class TaskLogistic(nn.Module):
    """One task's view model (``SongAggregator.view_models``): standardise, linear, sigmoid -> P(high)."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        steps = [step for _, step in pipeline.steps]
        if len(steps) != 2 or not isinstance(steps[0], StandardScaler) or not isinstance(steps[1], LogisticRegression):
            raise ValueError("a view's pipelines must be StandardScaler -> LogisticRegression")
        scaler, model = steps
        if list(model.classes_) != [0, 1]:
            raise ValueError(f"a view's classes must be [0, 1] (low, high), got {list(model.classes_)}")
        self.register_buffer("mean", _double(scaler.mean_))
        self.register_buffer("scale", _double(scaler.scale_))
        self.register_buffer("coef", _double(np.ravel(model.coef_)))
        self.register_buffer("intercept", _double(float(model.intercept_[0])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(((x - self.mean) / self.scale) @ self.coef + self.intercept)


class AggregatorGraph(nn.Module):
    """All tasks side by side: float32 features in, float32 P(high) per task out, float64 inside. With a second
    view, each task's SVM reads the other columns and the mix ``(1 - w) SVM + w view`` is the output."""

    def __init__(self, aggregator: SongAggregator) -> None:
        super().__init__()
        self.tasks = nn.ModuleList(TaskSVC(aggregator.models[task]) for task in aggregator.tasks)
        self.view_weight = aggregator.view_weight
        self.own_columns = None if aggregator.own_columns is None else torch.as_tensor(aggregator.own_columns)
        if self.view_weight:
            self.views = nn.ModuleList(TaskLogistic(aggregator.view_models[task]) for task in aggregator.tasks)
            self.view_columns = torch.as_tensor(aggregator.view_columns, dtype=torch.int64)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.to(torch.float64)
        own = x if self.own_columns is None else x.index_select(1, self.own_columns)
        svm = torch.stack([task(own) for task in self.tasks], dim=1)
        if not self.view_weight:
            return svm.to(torch.float32)
        heard = torch.stack([task(x.index_select(1, self.view_columns)) for task in self.views], dim=1)
        return ((1 - self.view_weight) * svm + self.view_weight * heard).to(torch.float32)


def aggregator_to_onnx(aggregator: SongAggregator, n_features: int) -> bytes:
    """Serialized ONNX model of the aggregator (opset 17, dynamic number of songs)."""
    graph = AggregatorGraph(aggregator).eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        graph, (torch.zeros(2, n_features),), buffer,
        input_names=[INPUT], output_names=[OUTPUT], dynamic_axes={INPUT: {0: "n"}, OUTPUT: {0: "n"}},
        opset_version=OPSET, dynamo=False,
    )
    return buffer.getvalue()


def run_aggregator_onnx(model: bytes | str, features: np.ndarray) -> np.ndarray:
    """Run the graph with ONNX Runtime on the CPU: (n, n_features) -> float32 (n, n_tasks)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: np.atleast_2d(features).astype(np.float32)})[0]
