"""What reports does when intake holds a report."""

from django.dispatch import receiver

from surveys import slots
from surveys.signals import report_held


@receiver(report_held, dispatch_uid="reports.publish_when_held")
def publish_when_held(*, survey_id, **_kwargs) -> None:
    # Scheduled publications wait for the sweep at the next slot boundary,
    # whatever arrives: an arrival must not be what starts a publication.
    # Without an interval (the embedded demo) the survey is published as
    # soon as it holds enough new reports, still k at a time.
    if slots.scheduled():
        return
    from reports.tasks import publish_survey

    publish_survey.delay_once_on_commit(str(survey_id))
