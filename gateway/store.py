"""The shared store as the gateway's event loop sees it.

The hot path is one read of several keys: on Redis an MGET pipelined with those of the other
requests in flight (gateway.redis_pipe); on the SQL store (the embedded default) it runs in a
thread. Writes are rare (sign-in, sign-out, a session's last-seen) and go through the
synchronous store in a thread.

Any failure to reach the store is StoreUnavailable, so every caller fails closed with a 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.redis_pipe import RedisPipe
from idp.common.store import Store, open_store

NAMESPACE = "bascule:"


class GatewayStore:
    def __init__(self, redis_url: str | None, sql_url: str, namespace: str = NAMESPACE) -> None:
        self.namespace = namespace
        self.sync: Store = open_store(redis_url, sql_url, namespace=namespace)
        self._redis = RedisPipe(redis_url) if redis_url else None

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """One round trip; raises StoreUnavailable, and the caller fails closed."""
        if self._redis is None:
            return await asyncio.to_thread(self.sync.get_many, keys)
        return await self._redis.mget([self.namespace + key for key in keys])

    async def put(self, key: str, value: str, ttl: float) -> None:
        await asyncio.to_thread(self.sync.put, key, value, ttl)

    async def replace(self, key: str, value: str, ttl: float) -> bool:
        return await asyncio.to_thread(self.sync.replace, key, value, ttl)

    async def take(self, key: str) -> str | None:
        return await asyncio.to_thread(self.sync.take, key)

    async def delete(self, *keys: str) -> None:
        await asyncio.to_thread(self.sync.delete, *keys)

    async def sadd(self, key: str, member: str, ttl: float) -> None:
        await asyncio.to_thread(self.sync.sadd, key, member, ttl)

    async def smembers(self, key: str) -> set[str]:
        return await asyncio.to_thread(self.sync.smembers, key)

    async def ping(self) -> None:
        await asyncio.to_thread(self.sync.ping)

    async def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        self.sync.close()
