"""Naming another CSMS's adapter: a file or a module, checked once, with one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.adapters.load import REQUIRED_METHODS, AdapterError, load_adapter_class
from scenarios.adapters.unstuck_rest import UnstuckRestAdapter

GOOD = "class Theirs:\n    def __init__(self, ocpp_url, api_url, token):\n        pass\n" + "".join(
    f"    async def {m}(self, *args, **kwargs):\n        return None\n" for m in REQUIRED_METHODS
)


def test_a_module_and_class(tmp_path: Path):
    assert load_adapter_class("scenarios.adapters.unstuck_rest:UnstuckRestAdapter") is UnstuckRestAdapter


def test_a_file_outside_any_package_with_a_sibling_import(tmp_path: Path):
    (tmp_path / "their_helpers.py").write_text("NAME = 'theirs'\n", encoding="utf-8")
    (tmp_path / "their_adapter.py").write_text("import their_helpers\n" + GOOD, encoding="utf-8")
    cls = load_adapter_class(f"{tmp_path / 'their_adapter.py'}:Theirs")
    assert cls.__name__ == "Theirs"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("no_colon_here", "expected path/to/file.py:Class or package.module:Class"),
        ("their_csms.adapter:Theirs", "cannot import their_csms.adapter"),
        ("scenarios.adapters.unstuck_rest:Nope", "has no Nope; classes there with verdicts(): UnstuckRestAdapter"),
        ("scenarios.adapters.base:FREE", "FREE is not a class"),
        ("/no/such/file.py:Theirs", "no file /no/such/file.py"),
    ],
)
def test_a_wrong_name_is_one_clear_error(spec: str, says: str):
    with pytest.raises(AdapterError) as err:
        load_adapter_class(spec)
    assert says in str(err.value) and str(err.value).startswith(f"--adapter {spec!r}: ")


def test_missing_or_sync_methods_are_named(tmp_path: Path):
    src = GOOD.replace("    async def reserve(", "    def reserve(")
    src = src.replace("    async def aclose(", "    async def close(")
    (tmp_path / "partial.py").write_text(src, encoding="utf-8")
    with pytest.raises(AdapterError, match=r"lacks the coroutine\(s\) reserve, aclose .*NotSupportedError"):
        load_adapter_class(f"{tmp_path / 'partial.py'}:Theirs")


def test_an_adapter_that_fails_to_import_says_so(tmp_path: Path):
    (tmp_path / "broken.py").write_text("import no_such_dependency_xyz\n", encoding="utf-8")
    with pytest.raises(AdapterError, match="importing .*broken.py failed: ModuleNotFoundError"):
        load_adapter_class(f"{tmp_path / 'broken.py'}:Theirs")


def test_a_constructor_the_harness_cannot_call_is_named(tmp_path: Path):
    src = GOOD.replace("def __init__(self, ocpp_url, api_url, token):", "def __init__(self, base_url):")
    (tmp_path / "ctor.py").write_text(src, encoding="utf-8")
    with pytest.raises(AdapterError, match=r"Theirs\(ocpp_url, api_url, token\) is how the harness builds it"):
        load_adapter_class(f"{tmp_path / 'ctor.py'}:Theirs")
