"""Respondent pages: the form, the receipt, amending and withdrawing a report."""

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import OperationalError
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from server import errors
from server.http import no_referrer
from surveys import catalog, intake, membership, periods, ratelimit, selectors, services
from surveys.forms import (
    AmendForm,
    ReceiptForm,
    ReportForm,
    WithdrawForm,
)
from surveys.periods import period_label


def _closed(request, survey):
    return render(request, "surveys/closed.html", {"survey": survey}, status=410)


def _rate_limited(request, survey, verdict: ratelimit.Verdict, scope: str):
    response = render(request, "surveys/rate_limited.html",
                      {"survey": survey, "scope": scope}, status=429)
    response["Retry-After"] = str(verdict.retry_after)
    return response


def respondent_page(view):
    """Respondent pages send no referrer and are exempt from CSRF checks.

    The exemption is on purpose: they carry no session or login for a forged
    request to ride on (anyone with the link may file a report, and amending
    or withdrawing needs the receipt itself), and under `no-referrer` browsers
    send `Origin: null` on a form POST, which Django's origin check rejects.
    Without the token no CSRF cookie is set either, so a respondent's browser
    keeps nothing from Chorus.
    """
    return no_referrer(csrf_exempt(view))


def _add_service_errors(form, error: ValidationError) -> None:
    for field, messages in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages)


@respondent_page
@never_cache
@require_http_methods(["GET", "POST"])
def respondent_form(request, share_token):
    survey = selectors.survey_by_share_token(token=share_token)
    if not survey.is_open:
        return _closed(request, survey)
    today = timezone.localdate()
    form = ReportForm(request.POST or None, survey=survey, today=today)
    if request.method == "POST" and form.is_valid():
        values = form.cleaned_data
        draft = services.ReportDraft(
            unit=values["unit"], period=timezone.datetime.fromisoformat(values["period"]).date(),
            signals=tuple(values["signals"]), outcome=values["outcome"],
            comment=values["comment"], token=values.get("token", ""))
        token = values["submission_token"]
        # Checked before the limit too, so that reloading the receipt page
        # after the day's last report does not answer "try tomorrow".
        if intake.submission_token_spent(token=token):
            return _already_received(request, survey)
        try:
            receipt = intake.report_counted(
                request=request, survey=survey,
                file=lambda: intake.report_create_once(survey=survey, draft=draft,
                                                       submission_token=token))
        except intake.RateLimited as limited:
            # The answers stay on the page, to send from elsewhere or later.
            return _form_refused(request, survey, form, refusal="rate_limited",
                                 status=429, retry_after=limited.retry_after)
        except OperationalError as error:
            if not errors.database_busy(error):
                raise
            return _form_refused(request, survey, form, refusal="busy", status=503,
                                 retry_after=errors.BUSY_RETRY_AFTER_SECONDS)
        except intake.AlreadyReceived:
            return _already_received(request, survey)
        except services.SurveyClosed:
            return _closed(request, survey)
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            # Rendered in the POST response, never redirected to: the receipt
            # must not appear in a URL, the history or a cache (never_cache).
            return render(request, "surveys/receipt.html", {
                "survey": survey, "receipt": receipt,
                "received_week": services.report_received_week(at=timezone.now()),
                "chosen_period": period_label(
                    period=survey.period,
                    start=periods.period_start_for(period=survey.period, day=draft.period)),
            }, status=201)
    status = 400 if request.method == "POST" else 200
    return render(request, "surveys/form.html", _form_context(survey, form), status=status)


def _form_context(survey, form) -> dict:
    return {
        **_answers_context(survey), "form": form,
        # A form sent back keeps its token: nothing was filed with it.
        "submission_token": form["submission_token"].value() or intake.submission_token_new(),
        "proof_max_bytes": membership.PROOF_MAX_BYTES,
    }


def _form_refused(request, survey, form, *, refusal: str, status: int, retry_after: int):
    """The form again, with the answers as sent and why nothing was stored."""
    response = render(request, "surveys/form.html",
                      {**_form_context(survey, form), "refusal": refusal}, status=status)
    response["Retry-After"] = str(retry_after)
    return response


def _already_received(request, survey):
    return render(request, "surveys/already_received.html", {"survey": survey})


def _answers_context(survey) -> dict:
    return {"survey": survey, "units": selectors.unit_paths(survey=survey),
            "signals": catalog.SIGNALS,
            "comment_max": ReportForm.base_fields["comment"].max_length}


@respondent_page
@never_cache
@require_http_methods(["GET", "POST"])
def respondent_amend(request, share_token):
    """Receipt first; then the stored answers, prefilled, to change and save.

    Every POST is a receipt look-up and counts against the same daily limit
    as checking or withdrawing. The receipt travels in the POST body only.
    """
    survey = selectors.survey_by_share_token(token=share_token)
    if not survey.is_open:
        return _closed(request, survey)
    today = timezone.localdate()
    context = {**_answers_context(survey), "lookup": ReceiptForm(), "form": None,
               "saved": False, "unknown": False}
    if request.method == "GET":
        return render(request, "surveys/amend.html", context)
    verdict = ratelimit.hit(request=request, survey_id=survey.id, scope=ratelimit.RECEIPT)
    if not verdict.allowed:
        return _rate_limited(request, survey, verdict, ratelimit.RECEIPT)
    if request.POST.get("step") == "save":
        return _amend_save(request, survey, today, context)
    lookup = ReceiptForm(request.POST)
    context["lookup"] = lookup
    if not lookup.is_valid():
        return render(request, "surveys/amend.html", context, status=400)
    receipt = lookup.cleaned_data["receipt"]
    answers = selectors.report_answers(survey=survey, receipt=receipt)
    if answers is None:
        context["unknown"] = True
        return render(request, "surveys/amend.html", context, status=404)
    context["form"] = AmendForm(initial={**answers, "period": answers["period"].isoformat(),
                                         "receipt": receipt}, survey=survey, today=today)
    return render(request, "surveys/amend.html", context)


def _amend_save(request, survey, today, context):
    form = AmendForm(request.POST, survey=survey, today=today)
    context["form"] = form
    if form.is_valid():
        values = form.cleaned_data
        changes = {
            "unit": values["unit"], "period": dt.date.fromisoformat(values["period"]),
            "signals": tuple(values["signals"]), "outcome": values["outcome"],
            "comment": values["comment"]}
        try:
            report = services.report_amend(survey=survey, receipt=values["receipt"],
                                           changes=changes)
        except OperationalError as error:
            if not errors.database_busy(error):
                raise
            # The changes stay on the page, to save again.
            response = render(request, "surveys/amend.html", {**context, "busy": True},
                              status=503)
            response["Retry-After"] = str(errors.BUSY_RETRY_AFTER_SECONDS)
            return response
        except services.SurveyClosed:
            return _closed(request, survey)
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            if report is None:
                context.update(form=None, unknown=True)
                return render(request, "surveys/amend.html", context, status=404)
            context.update(form=None, saved=True)
            return render(request, "surveys/amend.html", context)
    return render(request, "surveys/amend.html", context, status=400)


@respondent_page
@never_cache
@require_http_methods(["GET", "POST"])
def respondent_withdraw(request, share_token):
    survey = selectors.survey_by_share_token(token=share_token)
    form = WithdrawForm(request.POST or None)
    if request.method == "POST":
        verdict = ratelimit.hit(request=request, survey_id=survey.id, scope=ratelimit.RECEIPT)
        if not verdict.allowed:
            return _rate_limited(request, survey, verdict, ratelimit.RECEIPT)
    withdrawn = held = None
    if request.method == "POST" and form.is_valid():
        receipt = form.cleaned_data["receipt"]
        if form.cleaned_data["action"] == WithdrawForm.CHECK:
            held = selectors.report_held(survey=survey, receipt=receipt)
        else:
            withdrawn = services.report_withdraw(survey=survey, receipt=receipt)
    if withdrawn is False or held is False:
        status = 404
    else:
        status = 400 if request.method == "POST" and not form.is_valid() else 200
    return render(request, "surveys/withdraw.html", {
        "survey": survey, "form": form, "withdrawn": withdrawn, "held": held,
    }, status=status)
