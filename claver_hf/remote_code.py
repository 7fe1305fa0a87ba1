"""Source files saved with a CLAVER folder, so that it loads with `trust_remote_code=True` without claver-hf.

transformers builds remote-code classes from modules lying flat in the folder, and gathers them by following
only same-folder relative imports (`from .x import y`). claver_hf nests its modules in packages
(`from ..configuration.configuration_claver import ClaverConfig`), so [`save_remote_code`] copies every module
a class needs, found through its relative imports (with `ast`, inside functions too), into the folder and
rewrites each of those imports as `from .<module> import ...`.

The modules must be leaves (no relative import of a package `__init__`), have distinct file names, and not
import claver_hf by its absolute name: a machine loading the folder without claver-hf has only these files.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_PACKAGE = "claver_hf"
_RELATIVE_IMPORT = re.compile(r"from\s+\.+[\w.]*\s+import\b")


class RemoteCodeError(ValueError):
    """A module cannot be saved as flat remote code (see the module docstring)."""


def class_reference(cls: type) -> str:
    """How `auto_map` names a class of the flat source files: `"<module file name>.<class name>"`."""
    return f"{cls.__module__.rpartition('.')[2]}.{cls.__name__}"


def save_remote_code(obj: Any, auto_map: Mapping[str, type], save_directory: str | os.PathLike) -> list[Path]:
    """Name the classes of `auto_map` in `obj.auto_map` and write their source files to `save_directory`.

    Args:
        obj: the object whose JSON file carries `auto_map` (a config or a processor), saved after this call.
        auto_map: Auto class name (`"AutoModel"`, ...) -> the class it builds; merged into `obj.auto_map`.
        save_directory: the folder being saved; created if needed.

    Returns:
        The files written: the modules defining the classes and every module they import relatively.
    """
    obj.auto_map = {
        **(getattr(obj, "auto_map", None) or {}),
        **{auto_class: class_reference(cls) for auto_class, cls in auto_map.items()},
    }
    return write_flat_modules(
        [Path(sys.modules[cls.__module__].__file__) for cls in auto_map.values()], save_directory
    )


def write_flat_modules(module_files: Iterable[Path], save_directory: str | os.PathLike) -> list[Path]:
    """Write `module_files` and every module they import relatively, each as `<module name>.py` in
    `save_directory`, relative imports rewritten as `from .<module name> import ...`."""
    modules: dict[str, Path] = {}
    for path in relative_import_closure(module_files):
        if path.name in modules:
            raise RemoteCodeError(
                f"Two modules needed by the remote code share the file name {path.name!r}: "
                f"{modules[path.name]} and {path}; the saved files lie in one folder, so rename one of them."
            )
        modules[path.name] = path
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, path in sorted(modules.items()):
        target = folder / name
        target.write_text(flat_source(path), encoding="utf-8")
        written.append(target)
    return written


def relative_import_closure(module_files: Iterable[Path]) -> list[Path]:
    """`module_files` and every module file they import relatively, directly or not, in discovery order."""
    found: list[Path] = []
    pending = [Path(path).resolve() for path in module_files]
    while pending:
        path = pending.pop(0)
        if path not in found:
            found.append(path)
            pending.extend(_imported_file(path, node) for node in _relative_imports(path))
    return found


def flat_source(path: Path) -> str:
    """The source of `path` with each relative import rewritten as `from .<module name> import ...`."""
    lines = path.read_text(encoding="utf-8").split("\n")
    # From the end, so that rewriting an import does not move the ones after it on the same line.
    for node in reversed(_relative_imports(path)):
        text = lines[node.lineno - 1]
        start = len(text.encode("utf-8")[: node.col_offset].decode("utf-8"))  # ast counts UTF-8 bytes
        match = _RELATIVE_IMPORT.match(text, start)
        if match is None:
            raise RemoteCodeError(
                f"{path}:{node.lineno}: cannot rewrite this relative import; write it as "
                "`from .module import name`, with the module on the line of `from`."
            )
        module = _imported_file(path, node).stem
        lines[node.lineno - 1] = f"{text[:start]}from .{module} import{text[match.end() :]}"
    return "\n".join(lines)


def _relative_imports(path: Path) -> list[ast.ImportFrom]:
    """The relative imports of a module anywhere in it (functions included), after checking that it does not
    import claver_hf by its absolute name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    relative = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            relative.append(node)
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(name == _PACKAGE or name.startswith(f"{_PACKAGE}.") for name in names):
            raise RemoteCodeError(
                f"{path}:{node.lineno} imports {_PACKAGE} by its absolute name, which a machine loading the "
                "saved remote code does not have: use a relative import."
            )
    return sorted(relative, key=lambda node: (node.lineno, node.col_offset))


def _imported_file(path: Path, node: ast.ImportFrom) -> Path:
    """The module file a relative import of `path` names; it must be a module, not a package."""
    base = path.parent
    for _ in range(node.level - 1):
        base = base.parent
    target = base.joinpath(*node.module.split(".")) if node.module else base
    statement = f"`from {'.' * node.level}{node.module or ''} import ...`"
    if target.is_dir():
        raise RemoteCodeError(
            f"{path}:{node.lineno}: {statement} imports the package {target}; the remote code needs every "
            "module as a file, so import from the module that defines the names instead."
        )
    module_file = target.with_name(f"{target.name}.py")
    if not module_file.is_file():
        raise RemoteCodeError(
            f"{path}:{node.lineno}: {statement} names no module file ({module_file} is missing)."
        )
    return module_file
