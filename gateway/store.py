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
        self._waiting: list[tuple[list[str], asyncio.Future[list[str | None]]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """One round trip; raises StoreUnavailable, and the caller fails closed.

        On Redis the reads of all requests waiting at the same moment go out together, as one
        pipeline on one connection: one write and one read for the lot, where a connection
        per request would cost each its own (the gateway's throughput rests on this).
        """
        if self._redis is None:
            return await asyncio.to_thread(self.sync.get_many, keys)
        future: asyncio.Future[list[str | None]] = asyncio.get_running_loop().create_future()
        self._waiting.append(([self.namespace + key for key in keys], future))
        if len(self._waiting) == 1:
            asyncio.get_running_loop().call_soon(self._send_waiting)
        return await future

    def _send_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[list[str], asyncio.Future[list[str | None]]]]) -> None:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for keys, _ in batch:
            pipe.mget(keys)
        try:
            answers = await pipe.execute()
        except RedisError as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(f"redis: {exc}"))
            return
        for (_, future), found in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(found)

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
