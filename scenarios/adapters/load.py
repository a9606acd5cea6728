"""Find the adapter a team names (`path/to/file.py:Class` or `package.module:Class`), checked once up front.

A typo, a module not on the path or a method missing should be one clear error
before anything runs, not the same ImportError in every scenario.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import Any

from ..importing import import_file

__all__ = ["AdapterError", "load_adapter_class", "REQUIRED_METHODS"]

REQUIRED_METHODS = (
    "verdicts",
    "start",
    "stop",
    "unlock",
    "transactions",
    "session",
    "reserve",
    "create_reservation",
    "aclose",
)


class AdapterError(ValueError):
    """The adapter named on the command line cannot be used; the message says why and what to do."""


def load_adapter_class(spec: str) -> type[Any]:
    """The class `spec` names, after checking it has every coroutine of `CsmsAdapter`."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise AdapterError(f"--adapter {spec!r}: expected path/to/file.py:Class or package.module:Class")
    module = _import(spec, where)
    cls = getattr(module, name, None)
    if cls is None:
        found = sorted(k for k, v in vars(module).items() if inspect.isclass(v) and hasattr(v, "verdicts"))
        hint = f"; classes there with verdicts(): {', '.join(found)}" if found else ""
        raise AdapterError(f"--adapter {spec!r}: {where} has no {name}{hint}")
    if not inspect.isclass(cls):
        raise AdapterError(f"--adapter {spec!r}: {name} is not a class")
    try:
        inspect.signature(cls).bind("ws://csms/ocpp", "http://csms", "token")
    except TypeError as exc:
        raise AdapterError(
            f"--adapter {spec!r}: {name}(ocpp_url, api_url, token) is how the harness builds it, but {exc}"
        ) from None
    except ValueError:
        pass  # no signature to read (a builtin): the first scenario will say
    missing = [m for m in REQUIRED_METHODS if not inspect.iscoroutinefunction(getattr(cls, m, None))]
    if missing:
        raise AdapterError(
            f"--adapter {spec!r}: {name} lacks the coroutine(s) {', '.join(missing)} "
            "(async def; raise scenarios.adapters.base.NotSupportedError in those your CSMS cannot answer)"
        )
    return cls  # type: ignore[no-any-return]


def _import(spec: str, where: str) -> Any:
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise AdapterError(f"--adapter {spec!r}: no file {path}")
        try:
            return import_file(path)  # as pytest imports a test file: its own imports work as beside it
        except Exception as exc:
            raise AdapterError(f"--adapter {spec!r}: importing {path} failed: {exc!r}") from exc
    if os.getcwd() not in sys.path:  # as `python -m` would: a module in the folder you run from imports
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        raise AdapterError(
            f"--adapter {spec!r}: cannot import {where} ({exc}); give the file instead "
            f"(path/to/{where.rsplit('.', 1)[-1]}.py:Class) or put its folder on PYTHONPATH"
        ) from exc
    except Exception as exc:
        raise AdapterError(f"--adapter {spec!r}: importing {where} failed: {exc!r}") from exc
