"""Fixtures of the indexer tests: a session-wide local Ray (tests/support/ray_cluster.py)."""

from tests.support.ray_cluster import ray_local

__all__ = ["ray_local"]
