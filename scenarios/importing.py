"""Import a Python file as pytest imports a test file: by its dotted name under the folder above its package.

A team's adapter or scenario file then imports its own siblings and package exactly as it does under
pytest; a file outside any package is imported from its own folder.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["import_file"]


def import_file(path: Path) -> ModuleType:
    """The module of `path` (its package's root goes first on sys.path, as pytest's prepend mode does)."""
    path = path.resolve()
    root, dotted = path.parent, [path.stem]
    while (root / "__init__.py").is_file():
        dotted.insert(0, root.name)
        root = root.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(".".join(dotted))
