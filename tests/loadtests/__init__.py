"""Tests of loadtests/.

Never `import locust` (nor `pytest.importorskip("locust")`) in the pytest process: importing
locust monkey-patches the whole interpreter with gevent, and every trio test after it fails
(`select.epoll` is gone). Locust runs in subprocesses here; `needs_locust` skips without importing it.
"""

import importlib.util

import pytest

needs_locust = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None, reason="the load tests need locust (the dev/load extras)"
)
