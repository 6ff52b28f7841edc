"""Per-survey rate limits that never know who is asking.

A bucket is named by HMAC-SHA256(salt of the day, client address + survey
id). The salt is random, lives in the cache (and for up to a minute in each
process's memory) and expires at the end of its (UTC) day, after which
yesterday's bucket names cannot be recomputed from an address by anyone,
including us. Counters expire with their salt. Nothing
here touches the database or a log.
"""

import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache, caches
from django.utils import timezone
from redis.exceptions import NoScriptError, RedisError

from server import kept_redis

SUBMIT = "submit"
RECEIPT = "receipt"
_PREFIX = "chorus:ratelimit"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int  # seconds until the buckets of the day are gone


def client_address(request) -> str:
    """The address of the client as the trusted proxy saw it.

    With CHORUS_CLIENT_IP_HEADER set, only that header is read, and of a list
    (X-Forwarded-For) only the rightmost entry, the one our proxy appended:
    everything to its left was written by the client and proves nothing.
    """
    header = settings.CHORUS_CLIENT_IP_HEADER
    if header:
        value = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
        rightmost = value.rsplit(",", 1)[-1].strip()
        if rightmost:
            return rightmost
    return request.META.get("REMOTE_ADDR", "")


def _today() -> dt.date:
    return timezone.now().astimezone(dt.UTC).date()


def _seconds_left(day: dt.date) -> int:
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    left = int((end - timezone.now()).total_seconds())
    # A day other than today (in tests) still gets a positive TTL of at most a day.
    return min(max(left, 1), 24 * 60 * 60)


# The last salt read, per process: (cache backend, day, salt, read again after).
# Kept for a minute at most, so that processes agree again soon after the
# cache lost the salt, and never used past its day.
_SALT_KEPT_SECONDS = 60.0
_salt_kept: tuple | None = None


def _salt(day: dt.date) -> bytes:
    return _salted(day)[0]


def _salted(day: dt.date) -> tuple[bytes, "hmac.HMAC"]:
    """The salt of the day and an HMAC keyed with it, to be copied: keying
    costs as much as hashing a bucket name, and the key changes once a day."""
    global _salt_kept
    backend, kept = caches["default"], _salt_kept
    if kept and kept[0] is backend and kept[1] == day and time.monotonic() < kept[3]:
        return kept[2]
    salt = _salt_read(day)
    salted = (salt, hmac.new(salt, digestmod=hashlib.sha256))
    _salt_kept = (backend, day, salted, time.monotonic() + _SALT_KEPT_SECONDS)
    return salted


def _salt_read(day: dt.date) -> bytes:
    return salt_read(f"{_PREFIX}:daysalt:{day.isoformat()}", timeout=_seconds_left(day))


def salt_read(key: str, *, timeout: int) -> bytes:
    """The random salt stored under `key` for `timeout` seconds, made by the first reader:
    for the salted buckets of intake and of logins. Raises RedisError."""
    # An int, which the Redis cache stores as plain digits for both paths.
    fresh = secrets.randbits(256)
    found = kept_redis.for_cache()
    if found is not None:
        # SET NX is atomic: of concurrent first requests of the day, one salt
        # wins, and GET hands it to the others in the same round trip.
        backend, kept = found
        stored = kept.command("SET", backend.make_key(key), fresh, "NX", "GET", "EX", timeout)
    else:
        cache.add(key, fresh, timeout=timeout)
        # Evicted in between: this request's bucket is lost, nothing worse.
        stored = cache.get(key)
    return int(stored or fresh).to_bytes(32, "big")


def bucket_digest(keyed: hmac.HMAC, name: str) -> str:
    """A bucket's name under a salt: `keyed` is hmac.new(salt, digestmod=sha256), copied
    here, since keying costs as much as hashing the name."""
    found = keyed.copy()
    found.update(name.encode())
    return found.hexdigest()


def bucket_key(*, address: str, survey_id, scope: str, day: dt.date | None = None) -> str:
    # The scope is hashed too: one client's buckets in two scopes (a code asked for, a
    # report filed) must not share a value that pairs the two requests.
    day = day or _today()
    digest = bucket_digest(_salted(day)[1], f"{scope}|{address}|{survey_id}")
    return f"{_PREFIX}:{scope}:{day.isoformat()}:{digest}"


def seconds_left() -> int:
    """Seconds until today's (UTC) buckets and their salt are gone."""
    return _seconds_left(_today())


def limit_per_day() -> int:
    return settings.CHORUS_SUBMISSIONS_PER_DAY


def hit(*, request, survey_id, scope: str, day: dt.date | None = None) -> Verdict:
    """Counts one attempt; refuses it once the bucket holds the day's limit."""
    day = day or _today()
    limit = limit_per_day()
    ttl = _seconds_left(day)
    if limit <= 0:
        return Verdict(allowed=True, retry_after=0)
    try:
        key = bucket_key(address=client_address(request), survey_id=survey_id, scope=scope,
                         day=day)
        count = count_up(key, timeout=ttl)
    except RedisError:
        # With Redis down, a report is still stored (its outbox row waits for
        # the broker); losing it would cost more than one day's limit.
        return Verdict(allowed=True, retry_after=0)
    return Verdict(allowed=count <= limit, retry_after=ttl)


# One atomic round trip: the bucket has its expiry before it counts. A script
# rather than MULTI/SET/INCR/EXEC: one command to send and one reply to parse
# cost the intake path a third of the CPU of the transaction.
_COUNT_LUA = """
redis.call('SET', KEYS[1], 0, 'NX', 'EX', ARGV[1])
return redis.call('INCR', KEYS[1])
"""
_COUNT_SHA = hashlib.sha1(_COUNT_LUA.encode(), usedforsecurity=False).hexdigest()


def count_up(key: str, *, timeout: int) -> int:
    """Adds one to the counter under `key` (made with `timeout` seconds to live if new) and
    returns it: for intake's and logins' buckets. Raises RedisError."""
    found = kept_redis.for_cache()
    if found is not None:
        backend, kept = found
        made = backend.make_key(key)
        try:
            return kept.command("EVALSHA", _COUNT_SHA, 1, made, timeout)
        except NoScriptError:
            # Redis lost its scripts (a restart): EVAL runs it and keeps it again.
            return kept.command("EVAL", _COUNT_LUA, 1, made, timeout)
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:
        # Expired between add() and incr(): this is the first attempt again.
        cache.add(key, 1, timeout=timeout)
        return 1


def refund(*, request, survey_id, scope: str, day: dt.date | None = None) -> None:
    """Gives back an attempt that stored nothing (the input was rejected)."""
    if limit_per_day() <= 0:
        return
    try:
        key = bucket_key(address=client_address(request), survey_id=survey_id, scope=scope,
                         day=day)
        if cache.decr(key) < 0:
            cache.incr(key)
    except (ValueError, RedisError):
        pass
