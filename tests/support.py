"""Helpers the test folders share: cleaning up the keys a test left in the shared Redis."""

from __future__ import annotations

import redis


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key under `prefix` (a test's own) from the Redis at `redis_url`."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()
