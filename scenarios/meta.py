"""What a scenario says about itself: `@scenario(...)` on a test function.

`unstuck-scenarios list` reads these without running anything; the reports show
them next to each result.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ScenarioInfo", "scenario", "catalogue", "CATALOGUE_DIR", "info_of"]

CATALOGUE_DIR = Path(__file__).parent / "catalogue"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ScenarioInfo:
    name: str  # the module name; `unstuck-scenarios run NAME`
    code: str  # short charge point id prefix, e.g. "UNL"
    purpose: str  # one line
    seed: str  # which seed passage it covers
    quick_s: float  # expected duration, quick profile
    full_s: float  # ... full profile
    path: Path | None = None

    def duration(self, profile: str) -> float:
        return self.full_s if profile == "full" else self.quick_s


def scenario(*, code: str, purpose: str, seed: str, quick_s: float, full_s: float | None = None) -> Callable[[F], F]:
    """Mark a test function as a catalogue scenario (its module name is its name)."""

    def mark(fn: F) -> F:
        name = fn.__module__.rsplit(".", 1)[-1]
        fn.scenario_info = ScenarioInfo(
            name,
            code,
            purpose,
            seed,
            quick_s,  # type: ignore[attr-defined]
            full_s if full_s is not None else quick_s,
        )
        return fn

    return mark


def info_of(fn: Any) -> ScenarioInfo | None:
    return getattr(fn, "scenario_info", None)


def catalogue() -> list[ScenarioInfo]:
    """Every scenario in scenarios/catalogue, in file order (imports the modules, runs nothing)."""
    out = []
    for mod in sorted(pkgutil.iter_modules([str(CATALOGUE_DIR)]), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"scenarios.catalogue.{mod.name}")
        for value in vars(module).values():
            info = info_of(value)
            if info is not None and info.name == mod.name:
                out.append(
                    ScenarioInfo(
                        info.name,
                        info.code,
                        info.purpose,
                        info.seed,
                        info.quick_s,
                        info.full_s,
                        CATALOGUE_DIR / f"{mod.name}.py",
                    )
                )
    return out
