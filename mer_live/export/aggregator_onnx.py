"""The song aggregator as one ONNX graph: "features" float32 (n, f) -> "probs" float32 (n, tasks).

Why not skl2onnx's SVC converter as is: it emits ONNX-ML ``SVMClassifier``, which ONNX Runtime
evaluates in float32. With C=100 and a small gamma (both on the aggregator's grid) the RBF
decision value is a sum of large dual coefficients that nearly cancel, and float32 left P(high)
1.6e-5 away from ``predict_proba`` on a synthetic aggregator, over the 1e-5 the bundle
promises. Feeding skl2onnx a double input does not help: it still casts to a float
``SVMClassifier``. So the graph is written here from the fitted pipeline's own parameters, and
exported with the same TorchScript exporter as the model. It is float64 but for one product where
that is safe: the songs' dot products with a task's support vectors, the graph's only large
operation, which ONNX Runtime runs 4-5x faster in float32. Its rounding enters the sum above
through exp(-gamma d^2), so each task takes float32 only where that moves P(high) by at most
``FLOAT32_BUDGET`` on its own support vectors (``_product_dtype``); the packaged bundles' large
SVMs do, `compact`'s 14-feature valence SVM does not. On the 400 4q-dev songs the graphs are within
7e-7 of ``predict_proba`` (3e-8 in float64 alone), and the export checks 1e-5 on its run's songs.

Why not a bare Platt sigmoid either: sklearn's binary ``predict_proba`` runs libsvm's
pairwise-coupling iteration (``multiclass_probability``, started at 1/2 and stopped once its
error is below 0.005/k), which leaves P(high) up to ~3e-3 away from the sigmoid. The graph
replays that iteration for k=2. From the start p=(1/2, 1/2) it stops after at most two rounds
for every clipped pairwise probability in [1e-7, 1 - 1e-7] (a test sweeps that range), so
``COUPLING_ROUNDS`` unrolls two, each masked where the iteration has already stopped. The result
matches ``predict_proba`` to ~1e-15 before the final cast to float32.
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
COUPLING_ROUNDS = 2
FLOAT32_BUDGET = 2.5e-6  # of P(high) a task's float32 product may cost: a quarter of the export's 1e-5


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


def _product_dtype(svc: SVC, platt_a: float) -> np.dtype:
    """float32 for a task's support-vector product when that moves its P(high) by at most ``FLOAT32_BUDGET`` on its
    own support vectors (the songs nearest its boundary, where the kernel is largest), else float64. The bound is
    |A| / 4 times the largest change of the decision value (A: the Platt slope)."""
    vectors = np.asarray(svc.support_vectors_, dtype=np.float64)
    rounded = vectors.astype(np.float32)
    squares = (vectors**2).sum(axis=1)
    exact = squares[:, None] + squares[None] - 2.0 * vectors @ vectors.T
    fast = squares[:, None] + (rounded.astype(np.float64) ** 2).sum(axis=1)[None] - 2.0 * (rounded @ rounded.T)
    dual = np.ravel(svc.dual_coef_)
    change = np.abs((np.exp(-svc._gamma * np.clip(exact, 0, None)) - np.exp(-svc._gamma * np.clip(fast, 0, None)))
                    @ dual).max()
    return np.dtype(np.float32 if abs(platt_a) / 4 * change <= FLOAT32_BUDGET else np.float64)


class SongSVMs(nn.Module):
    """Every task's SVM in one graph: standardise, RBF decision value, Platt sigmoid, libsvm coupling -> P(high).

    Why the tasks are joined: the coupling is a hundred scalar-sized nodes, and ONNX Runtime's cost per node was
    a large part of a live update's song estimate. Each task standardises and takes its distances to its own
    support vectors in its own 2-D matrix product (ONNX Runtime's batched MatMul was 5x slower than two plain
    ones); from the distances on, the tasks share every node, side by side on the last axis."""

    def __init__(self, pipelines: list[Pipeline]) -> None:
        super().__init__()
        parts = [_parts(pipeline) for pipeline in pipelines]
        with warnings.catch_warnings():  # sklearn 1.9 deprecates probA_/probB_ with probability=True
            warnings.simplefilter("ignore", FutureWarning)
            platt = np.array([[float(np.ravel(svc.probA_)[0]), float(np.ravel(svc.probB_)[0])] for _, svc in parts])
        self.n_tasks = len(parts)
        # each task's vectors as its product reads them: float32 where that stays within FLOAT32_BUDGET
        vectors = [np.asarray(svc.support_vectors_, dtype=_product_dtype(svc, slope))
                   for (_, svc), slope in zip(parts, platt[:, 0])]
        for i, (scaler, _) in enumerate(parts):
            self.register_buffer(f"mean_{i}", _double(scaler.mean_ if scaler.with_mean else 0.0))
            self.register_buffer(f"scale_{i}", _double(scaler.scale_ if scaler.with_std else 1.0))
            self.register_buffer(f"vectors_t_{i}", torch.as_tensor(vectors[i].T.copy()))
        counts = [len(v) for v in vectors]
        task_of_vector = np.repeat(np.arange(self.n_tasks), counts)
        dual = np.zeros((sum(counts), self.n_tasks))  # block-diagonal: each task's duals in its own column
        dual[np.arange(sum(counts)), task_of_vector] = np.concatenate([np.ravel(svc.dual_coef_) for _, svc in parts])
        squares = [(v.astype(np.float64) ** 2).sum(axis=1) for v in vectors]
        self.register_buffer("vectors_sq", _double(np.concatenate(squares)))
        self.register_buffer("gamma", _double(np.array([float(svc._gamma) for _, svc in parts])[task_of_vector]))
        self.register_buffer("dual", _double(dual))
        self.register_buffer("intercept", _double([float(svc.intercept_[0]) for _, svc in parts]))
        self.register_buffer("prob_a", _double(platt[:, 0]))
        self.register_buffer("prob_b", _double(platt[:, 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distances = []
        for i in range(self.n_tasks):
            z = (x - getattr(self, f"mean_{i}")) / getattr(self, f"scale_{i}")
            vectors = getattr(self, f"vectors_t_{i}")
            dots = (z.to(vectors.dtype) @ vectors).double()
            distances.append((z * z).sum(dim=1, keepdim=True) - 2.0 * dots)
        sq_dist = torch.cat(distances, dim=1) + self.vectors_sq  # (n, every task's support vectors)
        decision = torch.exp(-self.gamma * torch.clamp(sq_dist, min=0.0)) @ self.dual + self.intercept  # (n, tasks)
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


class SongLogistics(nn.Module):
    """Every task's view model (``SongAggregator.view_models``): standardise, linear, sigmoid -> P(high).
    A task's scaler and weights fold into one column: ((x - m) / s) . w + b = x . (w / s) + (b - m . (w / s))."""

    def __init__(self, pipelines: list[Pipeline]) -> None:
        super().__init__()
        weights, biases = [], []
        for pipeline in pipelines:
            steps = [step for _, step in pipeline.steps]
            if (len(steps) != 2 or not isinstance(steps[0], StandardScaler)
                    or not isinstance(steps[1], LogisticRegression)):
                raise ValueError("a view's pipelines must be StandardScaler -> LogisticRegression")
            scaler, model = steps
            if list(model.classes_) != [0, 1]:
                raise ValueError(f"a view's classes must be [0, 1] (low, high), got {list(model.classes_)}")
            weight = np.ravel(model.coef_) / scaler.scale_
            weights.append(weight)
            biases.append(float(model.intercept_[0]) - float(scaler.mean_ @ weight))
        self.register_buffer("weight", _double(np.stack(weights, axis=1)))  # (features, tasks)
        self.register_buffer("bias", _double(biases))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x @ self.weight + self.bias)


class AggregatorGraph(nn.Module):
    """All tasks side by side: float32 features in, float32 P(high) per task out, float64 inside but for the SVMs'
    one product. With a second view, each task's SVM reads the other columns and the mix ``(1 - w) SVM + w view``
    is the output."""

    def __init__(self, aggregator: SongAggregator) -> None:
        super().__init__()
        self.svms = SongSVMs([aggregator.models[task] for task in aggregator.tasks])
        self.view_weight = aggregator.view_weight
        self.own_columns = None if aggregator.own_columns is None else torch.as_tensor(aggregator.own_columns)
        if self.view_weight:
            self.views = SongLogistics([aggregator.view_models[task] for task in aggregator.tasks])
            self.view_columns = torch.as_tensor(aggregator.view_columns, dtype=torch.int64)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.to(torch.float64)
        svm = self.svms(x if self.own_columns is None else x.index_select(1, self.own_columns))
        if not self.view_weight:
            return svm.to(torch.float32)
        heard = self.views(x.index_select(1, self.view_columns))
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
