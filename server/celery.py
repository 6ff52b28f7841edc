import contextlib
import functools
import logging
import os

from celery import Celery
from celery.contrib.django.task import DjangoTask
from django.core.cache import cache
from django.db import transaction
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from server import kept_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")

log = logging.getLogger(__name__)


class ChorusTask(DjangoTask):
    """Base of every Chorus task: a final failure leaves one log line that
    names the task and the exception type, never arguments or messages,
    which could carry data."""

    abstract = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        log.error("%s failed after %d attempt(s): %s", self.name, self.request.retries + 1,
                  type(exc).__name__)


class OutboxBackedTask(ChorusTask):
    """A task whose work is also recorded in the database before dispatch.

    If the broker cannot take the message, the request that dispatched it
    must still succeed: the beat sweep finds the recorded work later.
    """

    abstract = True
    # A queued mark older than this is ignored, so a lost message delays
    # the work by at most this long (and the sweep runs sooner anyway).
    queued_mark_seconds = 60
    # How long a message published on commit waits before it runs, gathering
    # the work of the commits that meanwhile find it queued: under a stream of
    # reports, one run per this long instead of one per run of the worker.
    coalesce_seconds = 1.0

    def apply_async(self, *args, **kwargs):
        try:
            return super().apply_async(*args, **kwargs)
        except OperationalError as error:
            log.warning("broker unavailable, %s left for the sweep: %s", self.name,
                        type(error).__name__)
            return None

    def delay_once_on_commit(self, *args) -> None:
        """delay_on_commit, unless a message with the same arguments is queued
        and has not started yet: that run will see this transaction's outbox
        rows, since it reads them only after it has cleared the mark (see
        __call__). Under a burst of reports this publishes one message per
        coalesce_seconds instead of one per report. The wait changes none of
        that reasoning: the mark is checked after this commit, and a message
        that has not started has not read the outbox, however long it waits.

        Robust: the transaction is committed, so its request must answer as
        such even when the task (run in-process on the embedded default)
        fails; Django logs the failure and the outbox keeps the work."""
        transaction.on_commit(functools.partial(self._delay_unless_queued, *args), robust=True)

    def _queued_key(self, args) -> str:
        return f"chorus:queued:{self.name}:{':'.join(map(str, args))}"

    def _delay_unless_queued(self, *args) -> None:
        key = self._queued_key(args)
        try:
            if not kept_redis.add_int(key, 1, timeout=self.queued_mark_seconds):
                return
            marked = True
        except RedisError:
            marked = False  # publish, as without coalescing
        if self.apply_async(args, countdown=self.coalesce_seconds) is None and marked:
            # Not published: the mark must not hold back the next report.
            with contextlib.suppress(RedisError):
                cache.delete(key)

    def __call__(self, *args, **kwargs):
        if args and not kwargs:
            # Failing, the mark expires; reports meanwhile wait for it or the sweep.
            with contextlib.suppress(RedisError):
                cache.delete(self._queued_key(args))
        return super().__call__(*args, **kwargs)


app = Celery("chorus")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
