"""What a scenario says about itself: `@scenario(...)` on a test function.

`unstuck-scenarios list` reads these without running anything; the reports show
them next to each result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from .importing import import_file
from .profile import OCPP_VERSIONS

__all__ = ["ScenarioInfo", "scenario", "catalogue", "CATALOGUE_DIR", "info_of", "OCPP_VERSIONS"]

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
    needs: tuple[str, ...] = ()  # claims of the CSMS profile it cannot do without (scenarios/profile.py)
    ocpp: tuple[str, ...] = OCPP_VERSIONS  # the OCPP versions its fleet can speak
    quick_ocpp: tuple[str, ...] = ("1.6",)  # the versions it runs in by default in the quick profile

    def duration(self, profile: str) -> float:
        return self.full_s if profile == "full" else self.quick_s


def scenario(
    *,
    code: str,
    purpose: str,
    seed: str,
    quick_s: float,
    full_s: float | None = None,
    needs: Sequence[str] = (),
    ocpp: Sequence[str] = OCPP_VERSIONS,
    quick_ocpp: Sequence[str] = ("1.6",),
) -> Callable[[F], F]:
    """Mark a test function as a scenario (its module name is its name, without a `test_` in front).

    `needs`: the profile claims it cannot run without; against a CSMS whose profile lacks one,
    the scenario is reported "not claimed" instead of run.
    `ocpp`: the OCPP versions it can run in (each one a case of its own); `quick_ocpp`: those the quick
    profile runs by default (the full profile runs every one).
    """
    from .profile import CLAIMS

    unknown = [n for n in needs if n not in CLAIMS]
    if unknown:
        raise ValueError(f"@scenario(needs=...): unknown claim(s) {unknown}; known: {list(CLAIMS)}")
    strange = [v for v in (*ocpp, *quick_ocpp) if v not in OCPP_VERSIONS]
    if strange:
        raise ValueError(f"@scenario(ocpp=...): unknown OCPP version(s) {strange}; known: {list(OCPP_VERSIONS)}")

    def mark(fn: F) -> F:
        name = fn.__module__.rsplit(".", 1)[-1].removeprefix("test_")  # test_x.py, as pytest collects it, is x
        fn.scenario_info = ScenarioInfo(  # type: ignore[attr-defined]
            name,
            code,
            purpose,
            seed,
            quick_s,
            full_s if full_s is not None else quick_s,
            needs=tuple(needs),
            ocpp=tuple(ocpp),
            quick_ocpp=tuple(v for v in quick_ocpp if v in ocpp),
        )
        return fn

    return mark


def info_of(fn: Any) -> ScenarioInfo | None:
    return getattr(fn, "scenario_info", None)


def catalogue(folder: Path | None = None) -> list[ScenarioInfo]:
    """Every scenario in `folder` (default: ours, scenarios/catalogue), by file name; imports, runs nothing.

    A team's own folder (and its subfolders) is imported as pytest imports it (scenarios/importing.py).
    """
    root = (folder or CATALOGUE_DIR).resolve()
    out = []
    for path in sorted(root.rglob("*.py")):
        if path.name.startswith("_") or path.name == "conftest.py":
            continue
        module = import_file(path)
        found = [
            (key, info)
            for key, value in vars(module).items()
            if (info := info_of(value)) is not None and info.name == path.stem.removeprefix("test_")
        ]
        if len(found) > 1:
            raise ValueError(
                f"{path}: one @scenario test per module ({', '.join(key for key, _ in found)}); put each in a "
                "file of its own (parametrize one for cases)"
            )
        out += [replace(info, path=path) for _, info in found]
    return out
