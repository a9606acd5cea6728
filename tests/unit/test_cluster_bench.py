"""The cluster benchmark's pure parts: HAProxy config, run order, CPU split, summary (no sockets)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from loadtests.balancer import Backend, backend_of, haproxy_config
from loadtests.cluster_bench import cpu_split, parse_point, run_order, summarise


def test_run_order_alternates_so_each_layout_sees_early_and_late():
    assert run_order(["direct", "one", "two"], 2) == ["direct", "one", "two", "two", "one", "direct"]
    assert run_order(["one", "two"], 3) == ["one", "two", "two", "one", "one", "two"]


def test_parse_point():
    assert parse_point("mixed:500") == ("mixed", 500)
    with pytest.raises(Exception, match="MODE:CONNECTIONS"):
        parse_point("hold:10")


def test_cpu_split_others_is_machine_minus_ours():
    pct = cpu_split({"node n1": 10.0, "driver": 0.0}, {"node n1": 15.0, "driver": 2.0}, machine_s=18.0, wall_s=10.0)
    assert pct == {"node n1": 50.0, "driver": 20.0, "machine": 180.0, "others": 110.0}


def test_backend_of_reads_the_ports_file_addresses():
    assert backend_of("n1", "ws://127.0.0.1:4001/ocpp", "http://127.0.0.1:4002") == Backend(
        "n1", "127.0.0.1", 4001, 4002
    )


def test_config_balances_round_robin_without_stickiness_and_keeps_tunnels():
    cfg = haproxy_config(9000, 9001, [Backend("n1", "127.0.0.1", 1, 2), Backend("n2", "127.0.0.1", 3, 4)])
    assert "balance roundrobin" in cfg and "timeout tunnel" in cfg
    assert "stick" not in cfg and "cookie" not in cfg
    assert "server n2 127.0.0.1:3 check port 4" in cfg


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy")
def test_haproxy_accepts_the_config(tmp_path):
    cfg = tmp_path / "h.cfg"
    cfg.write_text(haproxy_config(9000, 9001, [Backend("n1", "127.0.0.1", 1, 2)]))
    out = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stdout + out.stderr


def test_summary_has_medians_per_layout():
    row = {
        "mode": "mixed",
        "cps": 10,
        "p99_by_class": {"Authorize": 3.0},
        "errors": 0,
        "load": [1.0, 2.0],
        "cpu_pct": {"node n1": 50.0, "machine": 100.0, "others": 50.0},
        "connections_per_node": {"n1": 10},
        "node_ms_per_call": 0.5,
        "ours_ms_per_call": 0.9,
        "waited_pct": {"node n1 trio": 5.0},
        "trio_ran_pct": {"node n1 trio": 40.0},
    }
    rows = [{**row, "layout": "one", "calls_per_s": v, "p50": 1.0, "p99": v / 100} for v in (100.0, 300.0, 200.0)]
    text = summarise(rows)
    assert "| 1 node, HAProxy | 200 | 1 | 2 | 3 | 0 |" in text
