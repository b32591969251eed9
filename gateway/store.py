"""The shared store as the gateway's event loop sees it.

The hot path is one read of several keys: on Redis it is a native asyncio MGET; on the SQL
store (the embedded default) it runs in a thread. Writes are rare (sign-in, sign-out, a
session's last-seen) and go through the synchronous store in a thread.

Any failure to reach the store is StoreUnavailable, so every caller fails closed with a 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from idp.common.store import Store, StoreUnavailable, open_store

NAMESPACE = "bascule:"


class GatewayStore:
    def __init__(self, redis_url: str | None, sql_url: str, namespace: str = NAMESPACE) -> None:
        self.namespace = namespace
        self.sync: Store = open_store(redis_url, sql_url, namespace=namespace)
        self._redis = (
            aioredis.Redis.from_url(
                redis_url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
            )
            if redis_url
            else None
        )

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """One round trip; raises StoreUnavailable, and the caller fails closed."""
        if self._redis is None:
            return await asyncio.to_thread(self.sync.get_many, keys)
        try:
            found = await self._redis.mget([self.namespace + key for key in keys])
        except RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return [value if value is None else str(value) for value in found]

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
            await self._redis.aclose()
        self.sync.close()
