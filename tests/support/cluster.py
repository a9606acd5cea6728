"""Nodes of a cluster behind HAProxy, for the cluster tier (tests/e2e/test_cluster*.py)."""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.balancer import Balancer, backend_of, start_haproxy
from tests.support.server import CsmsProcess, start_csms

__all__ = ["BEHIND_HAPROXY", "fresh_database", "start_balancer", "start_nodes", "stop_all"]

PG_ENV = "CSMS_TEST_POSTGRES_URL"
# Every charger reaches the nodes from HAProxy's address: trust it, as docs/cluster.md tells a site to.
BEHIND_HAPROXY = ("--allow-unknown-chargers", "--trusted-proxies", "127.0.0.1")


def fresh_database() -> Iterator[str]:
    """A fresh PostgreSQL database (advisory locks and NOTIFY channels are per database), dropped afterwards;
    skips without PostgreSQL or haproxy."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"the cluster tests need PostgreSQL: set {PG_ENV}")
    if shutil.which("haproxy") is None:
        pytest.skip("the cluster tests need haproxy (apt-get install haproxy)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = "cluster_" + uuid.uuid4().hex[:12]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_nodes(db_url: str, workdir: Path, names: tuple[str, ...], extra: list[str]) -> dict[str, CsmsProcess]:
    """`csms serve --node-id NAME` for each name, behind-HAProxy settings and `extra`; stopped by stop_all."""
    nodes: dict[str, CsmsProcess] = {}
    try:
        for name in names:
            (workdir / name).mkdir(exist_ok=True)
            nodes[name] = start_csms(db_url, workdir / name, [*BEHIND_HAPROXY, "--node-id", name, *extra])
    except BaseException:
        stop_all(nodes, None)
        raise
    return nodes


def start_balancer(workdir: Path, nodes: dict[str, CsmsProcess]) -> Balancer:
    """HAProxy (loadtests.balancer: round robin, no stickiness, /health/live checks) in front of the nodes, all up."""
    balancer = start_haproxy(workdir, [backend_of(name, node.ocpp, node.http) for name, node in nodes.items()])
    balancer.wait_up()
    return balancer


def stop_all(nodes: dict[str, CsmsProcess], balancer: Balancer | None) -> None:
    if balancer is not None:
        balancer.proc.kill()
        balancer.proc.wait()
    for node in nodes.values():
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGCONT)  # a test that failed while a node was frozen
        node.stop()
