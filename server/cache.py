"""The Redis cache backend, with one client per connection pool and a
cheaper way to send the commands every report sends.

Django's backend builds a new redis.Redis for every cache call, and redis-py
fills a table of some 170 response callbacks in each: more CPU than the
round trip it makes. A client over a pool is thread-safe, so one is kept.

A report sends two commands (the rate-limit count and the aggregation
mark). Through redis-py each also checks a connection out of the pool (with
a poll for unread data), wraps the call in its retry and metrics machinery
and checks it back in, which costs about as much CPU again as the command.
`command` sends one on a connection kept by the calling thread instead.
"""

import os
import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import ConnectionError as RedisConnectionError


class KeptRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}
        self._local = threading.local()

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client

    def _connection(self):
        # The thread's own connection, made with the pool's options (timeouts
        # included) but outside it; a forked child makes its own.
        local, pid = self._local, os.getpid()
        connection = getattr(local, "connection", None)
        if connection is None or local.pid != pid:
            pool = self._get_connection_pool(True)
            connection = local.connection = pool.connection_class(**pool.connection_kwargs)
            local.pid = pid
        return connection

    def command(self, *args):
        """Sends one command to the write server and returns its raw reply;
        raises redis-py's errors, the reply's own included (ResponseError).
        A dropped connection (Redis restarted, an idle timeout) is opened
        again and the command sent once more, as redis-py's retry would."""
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

    def add(self, key, value, timeout):
        if timeout == 0:
            return super().add(key, value, timeout)
        expiry = () if timeout is None else ("EX", timeout)
        return self.command("SET", key, self._serializer.dumps(value), *expiry, "NX") is not None


class KeptRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = KeptRedisCacheClient

    def validate_key(self, key):
        # Django warns of keys that memcached would refuse, a character at a
        # time on every call; Redis takes any key, and this cache is Redis.
        pass
