"""Celery tasks: ids in, a service call, nothing else. Every task here
recomputes from reports, so it is safe to run twice (hence acks_late)."""

from celery import shared_task
from django.db import DatabaseError

from reports import services
from server.celery import ChorusTask, OutboxBackedTask

# Database errors (deadlocks, a dropped connection, a failover) are worth a
# few more tries with backoff; after that the task gives up, and the outbox
# rows it left are picked up by the next sweep.
RETRY = {"autoretry_for": (DatabaseError,), "max_retries": 3, "retry_backoff": 2,
         "retry_backoff_max": 60, "retry_jitter": True}


@shared_task(name="reports.aggregate_survey", base=OutboxBackedTask, acks_late=True,
             reject_on_worker_lost=True, **RETRY)
def aggregate_survey(survey_id: str) -> None:
    handled = services.cells_apply_pending(survey_id=survey_id)
    if handled == services.PENDING_BATCH:
        aggregate_survey.delay(survey_id)


@shared_task(name="reports.sweep", base=ChorusTask, acks_late=True)
def sweep() -> None:
    """Beat job: picks up outbox rows whose dispatch was lost and publishes
    figures whose interval has passed."""
    for survey_id in services.surveys_with_pending_work():
        aggregate_survey.delay(str(survey_id))


@shared_task(name="reports.rebuild_survey", base=ChorusTask, acks_late=True,
             reject_on_worker_lost=True, **RETRY)
def rebuild_survey(survey_id: str) -> None:
    services.cells_rebuild(survey_id=survey_id)
