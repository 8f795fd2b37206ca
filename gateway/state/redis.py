"""The Redis state backend: state shared by every gateway process, one round trip per call."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from redis.crc import key_slot
from redis.exceptions import RedisError

from gateway.errors import ConfigError, StateUnavailable
from gateway.state.base import MessageHandler, ReconnectListener
from gateway.state.common import (
    check_count_args,
    check_expected,
    check_key,
    check_positive_int,
    check_ttl,
    check_value,
    deliver,
    estimate,
    log,
    parse_stream_id,
    window_ms,
    window_position,
)
from gateway.state.topology import check_url, connect, parse_url, redacted

__all__ = ["RedisBackend", "check_url"]

# The pub/sub listener's reconnect delay doubles from the minimum to the maximum (seconds).
_MIN_BACKOFF = 0.05
_MAX_BACKOFF = 1.0
_MAX_ID = 2**64 - 1  # the largest stream id part
_MAX_BATCH = 128  # count calls sent to Redis in one script run at most

# One count call waiting for its batch: its keys, its script arguments, its result.
_Counting = tuple[list[str], list[int], "asyncio.Future[list[int]]"]

# For the n-th (current, previous) bucket key pair, ARGV[2n - 1] is the amount to add to the
# current bucket and ARGV[2n] its TTL in ms (set when the bucket is created); returns both
# counts. The pairs may come from several `count` calls, run in order, atomically.
_COUNT = """
local out = {}
for i = 1, #KEYS, 2 do
  local amount = tonumber(ARGV[i])
  local current
  if amount > 0 then
    current = redis.call('INCRBY', KEYS[i], amount)
    if current == amount then
      redis.call('PEXPIRE', KEYS[i], ARGV[i + 1])
    end
  else
    current = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  out[#out + 1] = current
  out[#out + 1] = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
end
return out
"""

# ARGV: has_expected ('1'/'0'), expected, new, ttl_ms ('' for no expiry).
_CAS = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
"""

# ARGV: has_expected ('1'/'0'), field, expected, new.
_HCAS = """
local current = redis.call('HGET', KEYS[1], ARGV[2])
if ARGV[1] == '0' then
  if current then return 0 end
elseif current ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
return 1
"""


class _MapErrors:
    """Turns every Redis or socket failure into StateUnavailable, so callers fail closed."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, (RedisError, OSError)):
            raise StateUnavailable(f"redis: {exc}") from exc


_redis_errors = _MapErrors()


def _coalesced(
    batch: list[_Counting],
) -> tuple[list[str], list[int], Callable[[list[int]], list[list[int]]]]:
    """One script run for a batch, each (current, previous) bucket pair sent once with the
    sum of its amounts: requests of one principal or to one dataset share their counters,
    so a batch repeats few keys many times. Returns the keys, the arguments and a function
    turning the script's answer into each call's own, as if the calls had run one by one in
    order (a call sees the increments of the calls before it and its own, not those after)."""
    slots: dict[str, int] = {}  # current bucket key -> its pair's index
    keys: list[str] = []
    args: list[int] = []
    placed: list[list[tuple[int, int]]] = []  # per call: (pair index, amount) per hit
    for call_keys, call_args, _ in batch:
        hits = []
        for i in range(0, len(call_keys), 2):
            current = call_keys[i]
            index = slots.get(current)
            if index is None:
                index = slots[current] = len(keys) // 2
                keys += (current, call_keys[i + 1])
                args += (0, call_args[i + 1])
            args[2 * index] += call_args[i]
            hits.append((index, call_args[i]))
        placed.append(hits)

    def answer(raw: list[int]) -> list[list[int]]:
        # Walk back from the last call: each call's count is the final one less what the
        # calls after it added.
        later = [0] * (len(keys) // 2)
        out: list[list[int]] = []
        for hits in reversed(placed):
            counts: list[int] = []
            for index, amount in reversed(hits):
                counts += (int(raw[2 * index + 1]), int(raw[2 * index]) - later[index])
                later[index] += amount
            counts.reverse()
            out.append(counts)
        out.reverse()
        return out

    return keys, args, answer


def _fail_unanswered(calls: list[_Counting]) -> None:
    """After close() cancelled a batch: nobody may wait for ever."""
    for _, _, done in calls:
        if not done.done():
            done.set_exception(StateUnavailable("redis: backend closed"))


def _ttl_ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisBackend:
    """State in Redis: one server, a master watched by Sentinels, or a Redis Cluster. Every
    method is one round trip (the Lua scripts run atomically).

    Names in Redis: `<prefix>count:<key>:<window ms>:<bucket>`, `<prefix>kv:<key>`,
    `<prefix>hash:<name>`, `<prefix>stream:<name>`; channels are `<prefix><channel>`. On a
    Cluster a counter's two buckets share a hash tag, `<prefix>count:{<key>:<window ms>}:
    <bucket>`, so the counting script's keys of one counter stay on one slot, and a batch
    runs one script per slot, all at once.
    Sockets time out after `timeout` seconds and commands are never retried, so a dead Redis
    gives StateUnavailable promptly; stale connections are replaced on their next use, so the
    backend recovers by itself when Redis comes back, or when Sentinel has promoted a new
    master. One listener task per backend receives pub/sub messages and resubscribes after
    a reconnect.

    `wait_replicas`: writes that must survive a failover (`durable()`: breakers, grants)
    wait until that many replicas have them, at most `wait_timeout` seconds (Redis `WAIT`).
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        prefix: str = "datagate:",
        *,
        timeout: float = 0.5,
        max_connections: int = 64,
        health_interval: float = 5.0,
        password: str | None = None,
        sentinel_password: str | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
    ) -> None:
        topology = parse_url(url)
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError("state prefix must be a non-empty string")
        self._prefix = prefix
        self._timeout = timeout
        self._health_interval = health_interval
        self._wait = (wait_replicas, _ttl_ms(wait_timeout))
        self.topology = topology.kind
        self._cluster = topology.kind == "cluster"
        if self._cluster and wait_replicas:
            # A Cluster client cannot send WAIT on the connection that carried the write.
            raise ConfigError("state.wait_replicas: not supported with redis+cluster:// URLs")
        self._redis: Any = connect(
            topology,
            timeout=timeout,
            max_connections=max_connections,
            password=password,
            sentinel_password=sentinel_password,
        )
        self._shown = redacted(url)
        self._scripts = [self._redis.register_script(source) for source in (_COUNT, _CAS, _HCAS)]
        self._count, self._cas, self._hcas = self._scripts
        # Pub/sub: handlers by unprefixed channel, channels confirmed on the current
        # connection, and subscribers waiting for a confirmation.
        self._handlers: dict[str, list[MessageHandler]] = {}
        self._reconnect_listeners: list[ReconnectListener] = []
        self._lost = False  # the pub/sub connection was lost since it last confirmed
        self._confirmed: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._backoff = _MIN_BACKOFF
        # count calls waiting for the next batch, and the task sending batches.
        self._counting: list[_Counting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the Lua scripts. Raises StateUnavailable if Redis does not answer; the
        backend stays usable and works as soon as Redis does."""
        with _redis_errors:
            for script in self._scripts:
                await self._redis.script_load(script.script)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            _fail_unanswered(self._counting)
            self._counting.clear()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    async def ping(self) -> None:
        with _redis_errors:
            await self._redis.ping()

    # -- counters ---------------------------------------------------------------------------

    async def count(
        self, hits: Sequence[tuple[str, float]], now: float, amount: int = 1
    ) -> list[int]:
        """Concurrent calls go to Redis together: calls made while a batch is in flight are
        sent as the next batch, one script run (in call order, atomically) for all."""
        check_count_args(hits, now, amount)
        if not hits:
            return []
        keys: list[str] = []
        args: list[int] = []
        positions: list[tuple[int, int]] = []
        for key, window_seconds in hits:
            window = window_ms(window_seconds)
            index, remaining = window_position(now, window)
            base = (
                f"{self._prefix}count:{{{key}:{window}}}:"
                if self._cluster
                else f"{self._prefix}count:{key}:{window}:"
            )
            keys += (f"{base}{index}", f"{base}{index - 1}")
            # A bucket is read while current and while previous: two windows, plus slack for
            # clocks that differ between processes.
            args += (amount, 2 * window + 1000)
            positions.append((remaining, window))
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._counting.append((keys, args, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="state-redis-count")
        raw = await done
        return [
            estimate(raw[2 * i], raw[2 * i + 1], remaining, window)
            for i, (remaining, window) in enumerate(positions)
        ]

    async def _flush(self) -> None:
        # One batch in flight at a time: calls made meanwhile wait and go together in the
        # next one (group commit), so batches run in call order.
        while self._counting:
            batch = self._counting[:_MAX_BATCH]
            del self._counting[:_MAX_BATCH]
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Counting]) -> None:
        try:
            keys, args, answer = _coalesced(batch)
            with _redis_errors:
                raw = await (
                    self._count_by_slot(keys, args) if self._cluster else self._count(keys, args)
                )
            for done, counts in zip((done for _, _, done in batch), answer(raw), strict=True):
                if not done.done():
                    done.set_result(counts)
        except Exception as exc:
            for _, _, done in batch:
                if not done.done():
                    done.set_exception(exc)
        finally:
            _fail_unanswered(batch)

    async def _count_by_slot(self, keys: list[str], args: list[int]) -> list[int]:
        """The counting script once per slot, all at once: a Cluster runs a script only on
        keys of one slot. Each counter's pair is on one slot by its hash tag."""
        slots: dict[int, list[int]] = {}  # slot -> the pairs' indexes
        for pair in range(len(keys) // 2):
            slots.setdefault(key_slot(keys[2 * pair].encode()), []).append(pair)
        groups = list(slots.values())
        answers = await asyncio.gather(
            *(
                self._count(
                    [key for p in pairs for key in keys[2 * p : 2 * p + 2]],
                    [arg for p in pairs for arg in args[2 * p : 2 * p + 2]],
                )
                for pairs in groups
            )
        )
        raw = [0] * len(keys)
        for pairs, answer in zip(groups, answers, strict=True):
            for n, p in enumerate(pairs):
                raw[2 * p : 2 * p + 2] = answer[2 * n : 2 * n + 2]
        return raw

    async def _durably(self, send: Callable[[Any], Awaitable[Any]]) -> Any:
        """Send one write; with `wait_replicas`, in one round trip with a `WAIT` on the same
        connection, so the answer comes once that many replicas have the write (or the wait
        timed out: the write stands on the master, and a lagging replica is logged)."""
        replicas, wait_ms = self._wait
        if not replicas:
            return await send(self._redis)
        async with self._redis.pipeline(transaction=False) as pipe:
            await send(pipe)
            pipe.execute_command("WAIT", replicas, wait_ms)
            result, acknowledged = await pipe.execute()
        if acknowledged < replicas:
            log.warning(
                "state.replication_lagging", replicas=acknowledged, wanted=replicas, wait_ms=wait_ms
            )
        return result

    # -- key-value --------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        check_key("key", key)
        with _redis_errors:
            return await self._redis.get(f"{self._prefix}kv:{key}")

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        check_key("key", key)
        check_value(value)
        check_ttl(ttl)
        with _redis_errors:
            await self._durably(
                lambda r: r.set(
                    f"{self._prefix}kv:{key}", value, px=None if ttl is None else _ttl_ms(ttl)
                )
            )

    async def delete(self, key: str) -> bool:
        check_key("key", key)
        with _redis_errors:
            return bool(await self._durably(lambda r: r.delete(f"{self._prefix}kv:{key}")))

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, ttl: float | None = None
    ) -> bool:
        check_key("key", key)
        check_expected(expected)
        check_value(new)
        check_ttl(ttl)
        args = [
            b"0" if expected is None else b"1",
            expected or b"",
            new,
            b"" if ttl is None else str(_ttl_ms(ttl)).encode(),
        ]
        with _redis_errors:
            return bool(
                await self._durably(lambda r: self._cas([f"{self._prefix}kv:{key}"], args, r))
            )

    # -- hashes -----------------------------------------------------------------------------

    async def hget(self, name: str, field: str) -> bytes | None:
        check_key("hash name", name)
        check_key("hash field", field)
        with _redis_errors:
            return await self._redis.hget(f"{self._prefix}hash:{name}", field)

    async def hset(self, name: str, field: str, value: bytes) -> None:
        check_key("hash name", name)
        check_key("hash field", field)
        check_value(value)
        with _redis_errors:
            await self._durably(lambda r: r.hset(f"{self._prefix}hash:{name}", field, value))

    async def hdel(self, name: str, field: str) -> bool:
        check_key("hash name", name)
        check_key("hash field", field)
        with _redis_errors:
            return bool(await self._durably(lambda r: r.hdel(f"{self._prefix}hash:{name}", field)))

    async def hgetall(self, name: str) -> dict[str, bytes]:
        check_key("hash name", name)
        with _redis_errors:
            raw = await self._redis.hgetall(f"{self._prefix}hash:{name}")
        return {field.decode(): value for field, value in raw.items()}

    async def hcas(self, name: str, field: str, expected: bytes | None, new: bytes) -> bool:
        check_key("hash name", name)
        check_key("hash field", field)
        check_expected(expected)
        check_value(new)
        args = [b"0" if expected is None else b"1", field, expected or b"", new]
        with _redis_errors:
            return bool(
                await self._durably(lambda r: self._hcas([f"{self._prefix}hash:{name}"], args, r))
            )

    # -- publish/subscribe ------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> None:
        check_key("channel", channel)
        check_value(message)
        with _redis_errors:
            await self._redis.publish(f"{self._prefix}{channel}", message)

    def on_reconnect(self, listener: ReconnectListener) -> None:
        if listener not in self._reconnect_listeners:
            self._reconnect_listeners.append(listener)

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        """Register `handler` and return once Redis confirms the subscription.

        If Redis does not answer, StateUnavailable is raised but the handler stays
        registered: the listener subscribes it when Redis comes back. Messages published
        while this process was disconnected are not replayed.
        """
        check_key("channel", channel)
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        handlers = self._handlers.setdefault(channel, [])
        if handler not in handlers:
            handlers.append(handler)
        if channel in self._confirmed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            if self._listener is None or self._listener.done():
                self._listener = asyncio.create_task(self._listen(), name="state-redis-pubsub")
            elif self._pubsub is not None:
                # On failure the listener reconnects and subscribes every channel anyway.
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.subscribe(f"{self._prefix}{channel}")
            async with asyncio.timeout(3 * self._timeout):
                await waiter
        except TimeoutError:
            raise StateUnavailable(
                f"redis: subscription to {channel!r} not confirmed in time"
            ) from None
        finally:
            waiting = self._waiters.get(channel, [])
            if waiter in waiting:
                waiting.remove(waiter)

    def _settle(self, channel: str, error: StateUnavailable | None = None) -> None:
        for waiter in self._waiters.pop(channel, []):
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await self._receive(pubsub)
            except Exception as exc:  # whatever went wrong, the listener must live on
                error = StateUnavailable(f"redis: {exc}")
                log.warning("state.pubsub_disconnected", error=str(exc), retry_in=self._backoff)
                self._lost = True
                for channel in list(self._waiters):
                    self._settle(channel, error)
            finally:
                self._pubsub = None
                self._confirmed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF)

    async def _receive(self, pubsub: Any) -> None:
        """Subscribe every registered channel on a fresh connection, then dispatch."""
        await pubsub.subscribe(*(f"{self._prefix}{channel}" for channel in self._handlers))
        self._pubsub = pubsub
        self._backoff = _MIN_BACKOFF
        if self._lost:
            # Whatever was published while we were away is gone: the views re-read state.
            self._lost = False
            log.info("state.pubsub_reconnected", channels=len(self._handlers))
            await deliver(list(self._reconnect_listeners), "reconnect")
        awaiting_pong = False
        while True:
            message = await pubsub.get_message(timeout=self._health_interval)
            if message is None:
                # An idle connection may be silently dead: probe it, and give up on it if the
                # probe is not answered within another interval.
                if awaiting_pong:
                    raise ConnectionError("no answer to PING on the pub/sub connection")
                await pubsub.ping()
                awaiting_pong = True
                continue
            awaiting_pong = False
            kind = message["type"]
            if kind not in ("message", "subscribe"):
                continue
            channel = message["channel"].decode()[len(self._prefix) :]
            if kind == "subscribe":
                self._confirmed.add(channel)
                self._settle(channel)
            else:
                await deliver(list(self._handlers.get(channel, ())), channel, message["data"])

    # -- streams ----------------------------------------------------------------------------

    async def xadd(self, stream: str, value: bytes, maxlen: int | None = None) -> str:
        """Append `value`; with `maxlen`, trim approximately (MAXLEN ~): Redis keeps at least
        the newest `maxlen` entries and drops older ones in whole blocks."""
        check_key("stream", stream)
        check_value(value)
        if maxlen is not None:
            check_positive_int("maxlen", maxlen)
        with _redis_errors:
            entry_id = await self._durably(
                lambda r: r.xadd(
                    f"{self._prefix}stream:{stream}",
                    {b"v": value},
                    maxlen=maxlen,
                    approximate=True,
                )
            )
        return entry_id.decode()

    async def xrange(
        self, stream: str, after: str = "0", count: int = 100
    ) -> list[tuple[str, bytes]]:
        check_key("stream", stream)
        ms, seq = parse_stream_id(after)
        check_positive_int("count", count)
        if (ms, seq) == (_MAX_ID, _MAX_ID):
            return []  # nothing can follow the largest id; Redis would refuse the range
        with _redis_errors:
            raw = await self._redis.xrange(
                f"{self._prefix}stream:{stream}", min=f"({ms}-{seq}", max="+", count=count
            )
        return [(entry_id.decode(), fields[b"v"]) for entry_id, fields in raw]
