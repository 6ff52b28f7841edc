"""Celery tasks: ids in, a service call, nothing else. Every task here
recomputes from reports, so it is safe to run twice (hence acks_late)."""

from celery import shared_task

from reports import services
from server.celery import OutboxBackedTask


@shared_task(name="reports.aggregate_survey", base=OutboxBackedTask, acks_late=True,
             reject_on_worker_lost=True)
def aggregate_survey(survey_id: str) -> None:
    handled = services.cells_apply_pending(survey_id=survey_id)
    if handled == services.PENDING_BATCH:
        aggregate_survey.delay(survey_id)


@shared_task(name="reports.sweep", acks_late=True)
def sweep() -> None:
    """Beat job: picks up outbox rows whose dispatch was lost and publishes
    figures whose interval has passed."""
    for survey_id in services.surveys_with_pending_work():
        aggregate_survey.delay(str(survey_id))


@shared_task(name="reports.rebuild_survey", acks_late=True, reject_on_worker_lost=True)
def rebuild_survey(survey_id: str) -> None:
    services.cells_rebuild(survey_id=survey_id)
