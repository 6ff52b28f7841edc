"""Jobs: the status, progress and error an organizer sees for a background task.

Shared by rebuilds and detection runs; the job row is the one place a task reports to.
"""

from django.db import transaction
from django.http import Http404
from django.utils import timezone

from reports.models import Job
from surveys.models import Survey

_UNFINISHED = (Job.Status.QUEUED, Job.Status.RUNNING)


def job_mark_running(*, job_id) -> bool:
    return Job.objects.filter(id=job_id, status__in=_UNFINISHED).update(
        status=Job.Status.RUNNING) == 1


def job_progress_set(*, job_id, progress: float) -> bool:
    """Moves progress forward only; False when the job is finished or already further."""
    progress = min(max(float(progress), 0.0), 1.0)
    return Job.objects.filter(id=job_id, status__in=_UNFINISHED,
                              progress__lt=progress).update(progress=progress) == 1


JOB_ERROR_UNEXPECTED = ("The job stopped on an unexpected error. It was logged for the "
                        "operator; starting the job again may help.")
JOB_ERROR_WORKER_LOST = ("The worker running this job stopped (out of memory or over its "
                         "time limit); the job was not restarted.")


class JobFailure(Exception):
    """A failure whose message is written for the organizer and shown with the job."""


def job_finish(*, job_id, succeeded: bool, error: str = "") -> bool:
    fields = {"status": Job.Status.SUCCEEDED if succeeded else Job.Status.FAILED,
              "finished": timezone.now()}
    if succeeded:
        fields["progress"] = 1.0
    else:
        fields["error"] = error or JOB_ERROR_UNEXPECTED
    return Job.objects.filter(id=job_id, status__in=_UNFINISHED).update(**fields) == 1


def job_error_for(exc: BaseException) -> str:
    """What the organizer reads about a failure: a JobFailure's own words, and
    for anything else a fixed sentence (an exception's text may quote data)."""
    return str(exc) if isinstance(exc, JobFailure) else JOB_ERROR_UNEXPECTED


@transaction.atomic
def rebuild_start(*, survey: Survey) -> Job:
    from reports.tasks import rebuild_survey

    job = Job.objects.create(survey=survey, kind=Job.Kind.REBUILD)
    rebuild_survey.delay_on_commit(str(survey.id), job_id=str(job.id))
    return job


def job_get(*, survey: Survey, job_id) -> Job:
    job = Job.objects.filter(survey=survey, id=job_id).first()
    if job is None:
        raise Http404
    return job
