"""claver_hf's modules import each other without cycles, and `claver_hf.video_io` keeps its layers."""

import ast
import graphlib
from pathlib import Path

import claver_hf

PACKAGE_ROOT = Path(claver_hf.__file__).parent
# `claver_hf.video_io`'s modules, each allowed to import only those before it (its package docstring).
VIDEO_IO_LAYERS = ["common", "container", "sparse_reader", "backends"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports() -> dict[str, set[str]]:
    """Module name -> the claver_hf modules it imports relatively at import time (top-level statements; imports
    inside functions run later and cannot form an import cycle)."""
    graph = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                imported.add(".".join([*base, node.module] if node.module else base))
        graph[name] = imported
    return graph


def test_no_import_cycle():
    graph = module_imports()
    assert "claver_hf.video_io.sparse_reader" in graph
    # Raises CycleError, naming the modules of a cycle, if there is one.
    graphlib.TopologicalSorter(graph).prepare()


def test_video_io_modules_import_only_earlier_layers():
    graph = module_imports()
    for position, layer in enumerate(VIDEO_IO_LAYERS):
        allowed = {f"claver_hf.video_io.{earlier}" for earlier in VIDEO_IO_LAYERS[:position]}
        assert graph[f"claver_hf.video_io.{layer}"] <= allowed, layer
