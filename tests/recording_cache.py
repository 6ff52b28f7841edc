"""A local-memory cache that remembers which keys were written through its public API, so
a test can see what is stored without reading the backend's internals."""

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache


class RecordingCache(LocMemCache):
    def __init__(self, name, params):
        super().__init__(name, params)
        self.written: list[str] = []

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        self.written.append(key)
        return super().add(key, value, timeout, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        self.written.append(key)
        return super().set(key, value, timeout, version)

    def incr(self, key, delta=1, version=None):
        self.written.append(key)
        return super().incr(key, delta, version)


RECORDING = {"default": {"BACKEND": "tests.recording_cache.RecordingCache",
                         "LOCATION": "chorus-recording"}}
