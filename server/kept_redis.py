"""A Redis connection kept by each thread, for the commands every report sends.

A report sends two commands to the cache's Redis (the rate-limit count and the aggregation
mark). Django's Redis cache builds a new redis.Redis for every call, and redis-py fills a
table of some 170 response callbacks in each; a client then checks a connection out of its
pool (with a poll for unread data), wraps the call in its retry and metrics machinery and
checks it back in. Together that is more CPU than the round trips. `command` sends one
command on a connection the calling thread keeps, made from the cache's own location and
options, with redis-py's public ConnectionPool and Connection API only.

Values are written as Django's Redis cache writes them (an int as its digits), under keys
made by the cache's `make_key`, so the cache API reads and deletes them as its own.
"""

from __future__ import annotations

import os
import threading

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError


class KeptRedis:
    def __init__(self, location: str, options: dict):
        self.pool = redis.ConnectionPool.from_url(location, **options)
        self.local = threading.local()

    def _connection(self) -> redis.Connection:
        # The thread's own connection, made with the pool's options (timeouts included) but
        # outside it; a forked child makes its own.
        local, pid = self.local, os.getpid()
        connection = getattr(local, "connection", None)
        if connection is None or local.pid != pid:
            connection = local.connection = self.pool.connection_class(
                **self.pool.connection_kwargs)
            local.pid = pid
        return connection

    def command(self, *args):
        """Sends one command and returns its raw reply; raises redis-py's errors, the
        reply's own included (ResponseError). A dropped connection (Redis restarted, an idle
        timeout) is opened again and the command sent once more, as redis-py's retry would."""
        connection = self._connection()
        try:
            connection.send_command(*args)
            return connection.read_response()
        except RedisConnectionError:
            connection.disconnect()
        try:
            connection.send_command(*args)
            return connection.read_response()
        except RedisConnectionError:
            connection.disconnect()
            raise


_kept: dict[tuple, KeptRedis] = {}


def for_cache(alias: str = "default") -> tuple[RedisCache, KeptRedis] | None:
    """The cache and a KeptRedis on its (first, written) server, or None when the cache is
    not Redis."""
    backend = caches[alias]
    if not isinstance(backend, RedisCache):
        return None
    config = settings.CACHES[alias]
    location = config["LOCATION"]
    if not isinstance(location, str):
        location = location[0]
    location = location.split(",")[0]
    options = config.get("OPTIONS", {})
    key = (location, tuple(sorted(options.items())))
    kept = _kept.get(key)
    if kept is None:
        kept = _kept[key] = KeptRedis(location, options)
    return backend, kept


def add_int(key: str, value: int, *, timeout: int) -> bool:
    """cache.add(key, value, timeout) for an int value and a positive timeout, in one
    command when the cache is Redis."""
    found = for_cache()
    if found is None:
        return caches["default"].add(key, value, timeout=timeout)
    backend, kept = found
    return kept.command("SET", backend.make_key(key), value, "EX", timeout,
                        "NX") is not None
