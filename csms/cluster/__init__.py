"""Several `csms serve --node-id` processes on one PostgreSQL: shared presence, forwarded commands,
cluster duties held by one node at a time. See docs/cluster.md."""

from csms.cluster.node import ClusterConfigError, ClusterNode, check_cluster_settings, run_cluster

__all__ = ["ClusterConfigError", "ClusterNode", "check_cluster_settings", "run_cluster"]
