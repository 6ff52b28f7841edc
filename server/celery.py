import logging
import os

from celery import Celery
from celery.contrib.django.task import DjangoTask
from kombu.exceptions import OperationalError

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

    def apply_async(self, *args, **kwargs):
        try:
            return super().apply_async(*args, **kwargs)
        except OperationalError as error:
            log.warning("broker unavailable, %s left for the sweep: %s", self.name,
                        type(error).__name__)
            return None


app = Celery("chorus")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
