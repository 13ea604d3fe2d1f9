"""The layout's two rules, checked: the runtime, live monitoring and labeling never import torch, and no
module of ``mer_live`` imports, however indirectly, lazily or only for type checking, a module that
imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "mer_live"
HEAVY = ("torch", "onnx", "sklearn", "matplotlib", "ray", "skl2onnx")


def test_runtime_live_and_label_do_not_import_torch_or_training_tools():
    """Every module of ``runtime``, ``live``, ``label`` and ``audio`` (and the API, the core, the names of
    the networks, the CLI's parser) imports without torch, onnx, scikit-learn, matplotlib or Ray, and
    predicting and streaming with the packaged model do not pull them in either."""
    code = (
        "import importlib, pkgutil, sys, mer_live, mer_live.cli\n"
        "for package in ('runtime', 'live', 'label', 'audio'):\n"
        "    root = importlib.import_module('mer_live.' + package)\n"
        "    for m in pkgutil.iter_modules(root.__path__):\n"
        "        importlib.import_module(f'mer_live.{package}.{m.name}')\n"
        "import mer_live.api, mer_live.stats, mer_live.config, mer_live.atomic, mer_live.errors, mer_live.nn.names\n"
        "mer_live.cli.build_parser()\n"
        "import numpy as np\n"
        "for name in ('default', 'compact'):\n"
        "    model = mer_live.load(name, provider='cpu')\n"
        "    rate = model.audio.sample_rate\n"
        "    result = model.predict(np.random.default_rng(0).standard_normal(3 * rate).astype('float32') * 0.1, rate)\n"
        "    stream = model.stream(); list(stream.feed(np.zeros(50000, np.float32), rate)); stream.finish()\n"
        "    print(stream.song)\n"
        "assert mer_live.SongResult is type(result) and mer_live.Model is type(model)\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every ``mer_live`` module ``path`` names in an import anywhere (top level, in a function, under
    ``if TYPE_CHECKING``), or as a string that is exactly a module's name (``importlib.import_module``,
    the package's lazy ``_HOMES``)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
            found.add(node.value)
    return {name for name in found if name in modules and name != here}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_inside_mer_live():
    graph = import_graph()
    assert "mer_live.runtime.engine" in graph["mer_live.api"]  # the graph sees what it should
    assert "mer_live.runtime.engine" in graph["mer_live.runtime.options"]  # a type-only import counts
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_lazy_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
