"""Respondent and organizer pages."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from reports import selectors as report_selectors
from surveys import catalog, selectors, services
from surveys.forms import ReportForm, SurveyCreateForm, UnitsForm, WithdrawForm


def _closed(request, survey):
    return render(request, "surveys/closed.html", {"survey": survey}, status=410)


def _add_service_errors(form, error: ValidationError) -> None:
    for field, messages in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages)


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
            comment=values["comment"])
        try:
            receipt = services.report_create(survey=survey, draft=draft)
        except services.SurveyClosed:
            return _closed(request, survey)
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            return render(request, "surveys/receipt.html",
                          {"survey": survey, "receipt": receipt}, status=201)
    status = 400 if request.method == "POST" else 200
    return render(request, "surveys/form.html", {
        "survey": survey, "form": form, "units": selectors.unit_paths(survey=survey),
        "signals": catalog.SIGNALS,
    }, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def respondent_withdraw(request, share_token):
    survey = selectors.survey_by_share_token(token=share_token)
    form = WithdrawForm(request.POST or None)
    withdrawn = None
    if request.method == "POST" and form.is_valid():
        withdrawn = services.report_withdraw(survey=survey,
                                             receipt=form.cleaned_data["receipt"].strip())
    status = 404 if withdrawn is False else 200
    return render(request, "surveys/withdraw.html",
                  {"survey": survey, "form": form, "withdrawn": withdrawn}, status=status)


@login_required
def organizer_surveys(request):
    form = SurveyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        survey = services.survey_create(owner=request.user, **form.cleaned_data)
        return redirect("organizer-survey", survey_id=survey.id)
    return render(request, "surveys/organizer_list.html",
                  {"surveys": selectors.survey_list(owner=request.user), "form": form})


@login_required
def organizer_survey(request, survey_id):
    survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
    form = UnitsForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.units_upsert(survey=survey, units=form.cleaned_data["units"])
        except ValidationError as error:
            form.add_error("units", [f"{key}: {'; '.join(messages)}"
                                     for key, messages in error.message_dict.items()])
        else:
            return redirect("organizer-survey", survey_id=survey.id)
    return render(request, "surveys/organizer_survey.html", {
        "survey": survey, "form": form,
        "share_url": request.build_absolute_uri(f"/s/{survey.share_token}/"),
        "dashboard_url": request.build_absolute_uri(f"/d/{survey.dashboard_token}/"),
        "unit_count": selectors.unit_list(survey=survey).count(),
        "table": report_selectors.dashboard_table(survey=survey),
    })
