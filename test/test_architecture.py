"""The tree keeps the shape docs/architecture.md draws: stages without import cycles, a short
pipeline.py, every module on the map, and each default written once."""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "occface_ros"
pytestmark = pytest.mark.unit


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the occface_ros modules `path` imports at run time (TYPE_CHECKING blocks
    excluded, imports inside functions included)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)
            for n in ast.walk(node)}
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            out |= {f"{target}.{a.name}" for a in node.names} if not node.module else {target}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("occface_ros"):
            out.add(node.module)
    return out


def _subpackage(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def _graph() -> dict[str, set[str]]:
    graph = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        src = _subpackage(_module_name(path))
        for target in _imports(path):
            dst = _subpackage(target)
            if dst and dst != src:
                graph[src].add(dst)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_no_import_cycle_between_subpackages():
    graph = _graph()
    assert {"detection", "fitting", "occlusion"} <= graph["pipeline"]  # the scan sees the package
    assert _cycle(graph) is None, _cycle(graph)


def test_shared_layers_import_no_stage():
    graph = _graph()
    assert not graph["core"], graph["core"]
    assert "occlusion" not in graph["render"], graph["render"]
    assert graph["contracts"] <= {"core"}, graph["contracts"]


def test_the_core_imports_without_ros():
    ros_free = [p for p in PACKAGE.rglob("*.py") if "ros" not in p.relative_to(PACKAGE).parts[:1]]
    for path in ros_free:
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(rclpy|sensor_msgs|occface_msgs)\b", text, re.M), path


def test_pipeline_reads_as_the_data_path():
    text = (PACKAGE / "pipeline.py").read_text()
    assert len(text.splitlines()) <= 200
    order = [text.index(s) for s in ("self.tracker(image)", "self.fitting.points(", "self.fitting(points",
                                     "occlusion.reason(", "smoothed_face(")]
    assert order == sorted(order)


def test_architecture_map_lists_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    listed = set(re.findall(r"`(occface_ros/[\w/]+\.py)`", doc))
    modules = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    assert modules - listed == set(), f"not in docs/architecture.md: {sorted(modules - listed)}"
    assert listed - modules == set(), f"in docs/architecture.md but gone: {sorted(listed - modules)}"


def test_defaults_are_written_once():
    """The dataclasses' defaults are the YAML's (config/occface.yaml is where users read them)."""
    from occface_ros.config import load_config
    from occface_ros.fitting import FitConfig, IdentityAccumulatorConfig
    from occface_ros.smoothing import SmoothingConfig

    cfg = load_config()
    fit, acc, sm = FitConfig(), IdentityAccumulatorConfig(), SmoothingConfig()
    f = cfg["fitting"]
    assert (fit.iterations_cold, fit.iterations_warm) == (f["iterations_cold"], f["iterations_warm"])
    assert (fit.identity_prior_weight, fit.expression_prior_weight) == (f["identity_prior"], f["expression_prior"])
    assert (acc.freeze_after, acc.prior_weight) == (f["identity_freeze_frames"], f["identity_prior"])
    s = cfg["smoothing"]
    assert (sm.landmarks.min_cutoff, sm.landmarks.beta, sm.landmarks.d_cutoff, sm.landmarks.noise_deadzone) == (
        s["min_cutoff"], s["beta"], s["d_cutoff"], s["noise_deadzone"])
