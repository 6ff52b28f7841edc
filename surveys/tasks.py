"""Celery tasks of intake: mailing a verification code.

The address and the code travel in the task's message only (the broker holds it until a
worker takes it), never in the database or a log: ChorusTask's failure line names the
task and the exception type, nothing else.
"""

import smtplib

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.utils.translation import gettext as _

from server.celery import ChorusTask
from surveys import membership


class MailNotSent(Exception):
    """The mail server refused or could not be reached. Raised without the SMTP error,
    whose message can name the recipient, so no log line carries the address."""


@shared_task(name="surveys.verification_code_mail", base=ChorusTask,
             autoretry_for=(MailNotSent,), max_retries=4, retry_backoff=5,
             retry_backoff_max=120, retry_jitter=True)
def verification_code_mail(*, address: str, code: str, title: str) -> None:
    try:
        _send(address=address, code=code, title=title)
    except (smtplib.SMTPException, OSError):
        raise MailNotSent from None


def _send(*, address: str, code: str, title: str) -> None:
    send_mail(
        subject=_("Your code for “%(title)s”") % {"title": title},
        message=_("Your one-time code is %(code)s. It is valid for %(minutes)d minutes.\n\n"
                  "Enter it on the survey's page to get your membership token. The token "
                  "does not name you: nobody, this service included, can tell which report "
                  "it was spent on. If you did not ask for this code, ignore this message.")
        % {"code": code, "minutes": membership.CODE_VALID_MINUTES},
        from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=[address])
