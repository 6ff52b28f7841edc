"""Celery tasks: ids in, a service call, nothing else. Every task here
recomputes from reports, so it is safe to run twice (hence acks_late).
Detection tasks are not requeued when their worker is lost: a run that
exhausted one worker's memory would exhaust the next one's, so its job ends
failed instead (JobTask)."""

import logging

from celery import chord, shared_task
from celery.exceptions import Retry
from django.db import DatabaseError

from reports import detection, jobs, services
from server.celery import ChorusTask, OutboxBackedTask
from surveys import membership

logger = logging.getLogger(__name__)

# Database errors (deadlocks, a dropped connection, a failover) are worth a
# few more tries with backoff; after that the task gives up, and the held
# reports it left are picked up by the next sweep.
RETRY = {"autoretry_for": (DatabaseError,), "max_retries": 3, "retry_backoff": 2,
         "retry_backoff_max": 60, "retry_jitter": True}


@shared_task(name="reports.publish_survey", base=OutboxBackedTask, acks_late=True,
             reject_on_worker_lost=True, **RETRY)
def publish_survey(survey_id: str) -> None:
    services.publication_maybe_publish(survey_id=survey_id)


@shared_task(name="reports.sweep", base=ChorusTask, acks_late=True)
def sweep() -> None:
    """Beat job: publishes the surveys whose publication is due (the first
    sweep at or after each slot boundary, surveys.slots), and picks up held
    reports whose dispatch was lost when publications follow arrivals."""
    for survey_id in services.surveys_due_for_publication():
        publish_survey.delay(str(survey_id))
    # Detection follows publication, at most one run per survey at a time.
    for survey_id in detection.surveys_due_for_detection():
        detection_start_for_survey.delay(str(survey_id))
    # A verified survey past its last day forgets which addresses took part, as closing
    # it does.
    membership.membership_forget_closed()


class JobTask(ChorusTask):
    """A task working for an organizer's job: a failure that will not be
    retried marks the job failed with a message, so nobody polls a dead job
    for ever. Done in __call__ rather than on_failure, which eager runs never
    reach.

    In-process (eager) tasks run inside the request that dispatched them on
    commit: there the failed job is the answer, and the exception stops here
    instead of turning the request's 202 into a 500. On a worker it goes on to
    Celery, so a chord's error callback still runs."""

    abstract = True

    def apply_async(self, args=None, kwargs=None, **options):
        # A detection task whose worker process dies (out of memory, killed at
        # the hard time limit) never reaches __call__'s handler: Celery then
        # calls the errbacks, which fail the job. Failures the handler saw
        # have finished the job already, so this message only lands when the
        # process itself was lost.
        run_id = (kwargs or {}).get("run_id")
        if run_id and "link_error" not in options:
            options["link_error"] = detection_fail.si(
                run_id=run_id, error=jobs.JOB_ERROR_WORKER_LOST)
        return super().apply_async(args, kwargs, **options)

    def __call__(self, *args, **kwargs):
        run_id = kwargs.get("run_id")
        if run_id and detection.detection_failed(run_id=run_id):
            return None  # another part of the run failed: its work would be thrown away
        if run_id and (self.request.delivery_info or {}).get("redelivered"):
            # Handed out again after a worker stopped holding it unacknowledged
            # (the whole worker was killed, or restarted mid-task): running it
            # again could kill the next worker the same way, so the run ends.
            logger.error("job task %s redelivered (run %s): the job is failed", self.name,
                         run_id)
            detection.detection_fail(run_id=run_id, error=jobs.JOB_ERROR_WORKER_LOST)
            return None
        try:
            return super().__call__(*args, **kwargs)
        except Retry:
            raise
        except Exception as exc:
            # Ids only: no report content and no request metadata in the log.
            logger.exception("job task %s failed (run %s, job %s)", self.name,
                             kwargs.get("run_id"), kwargs.get("job_id"))
            error = jobs.job_error_for(exc)
            if kwargs.get("run_id"):
                detection.detection_fail(run_id=kwargs["run_id"], error=error)
            elif kwargs.get("job_id"):
                jobs.job_finish(job_id=kwargs["job_id"], succeeded=False, error=error)
            if self.request.is_eager:
                return None
            raise


@shared_task(name="reports.rebuild_survey", base=JobTask, acks_late=True,
             reject_on_worker_lost=True, **RETRY)
def rebuild_survey(survey_id: str, job_id: str | None = None) -> None:
    if job_id:
        jobs.job_mark_running(job_id=job_id)
    services.cells_rebuild(survey_id=survey_id)
    if job_id:
        jobs.job_finish(job_id=job_id, succeeded=True)


@shared_task(name="reports.detection_start_for_survey", base=ChorusTask, acks_late=True)
def detection_start_for_survey(survey_id: str) -> None:
    detection.detection_start_if_due(survey_id=survey_id)


@shared_task(name="reports.detection_prepare", base=JobTask, acks_late=True,
             reject_on_worker_lost=False, **RETRY)
def detection_prepare(*, run_id: str) -> None:
    """Chord head: stores the inputs once, then fans the replicas out to chunk
    tasks that carry only (run, model, start, stop)."""
    plan = detection.detection_prepare(run_id=run_id)
    rank = detection_rank.si(run_id=run_id).on_error(
        detection_fail.si(run_id=run_id, error=jobs.JOB_ERROR_WORKER_LOST))
    if not plan:
        rank.delay()
        return
    chord([detection_chunk.si(run_id=run_id, model=model, start=start, stop=stop)
           for model, start, stop in plan], rank).apply_async()


# A chord counts finished header tasks through the result backend.
@shared_task(name="reports.detection_chunk", base=JobTask, acks_late=True,
             reject_on_worker_lost=False, ignore_result=False, **RETRY)
def detection_chunk(*, run_id: str, model: str, start: int, stop: int) -> None:
    detection.detection_chunk(run_id=run_id, model=model, start=start, stop=stop)


@shared_task(name="reports.detection_rank", base=JobTask, acks_late=True,
             reject_on_worker_lost=False, **RETRY)
def detection_rank(*, run_id: str) -> None:
    detection.detection_rank(run_id=run_id)


@shared_task(name="reports.detection_fail", base=ChorusTask)
def detection_fail(*args, run_id: str, error: str = "") -> None:
    detection.detection_fail(run_id=run_id, error=error)
