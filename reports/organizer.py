"""The organizer's pages: their surveys, one survey's settings and tree, and the survey's
dashboard. They live here, downstream of intake, because they read analytics (the dashboard,
publication times) as well as the survey."""

from django.contrib import messages as notices
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from reports.views import dashboard_context
from surveys import selectors, services, slots
from surveys.forms import (
    InvitesForm,
    MinGroupSizeForm,
    SurveyCreateForm,
    UnitsCsvForm,
    UnitsForm,
)


@login_required
def organizer_surveys(request):
    form = SurveyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        survey = services.survey_create(owner=request.user, **form.cleaned_data)
        return redirect("organizer-survey", survey_id=survey.id)
    return render(request, "reports/organizer_list.html",
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
    return _organizer_survey_page(request, survey, form=form)


@login_required
@require_http_methods(["POST"])
def organizer_min_group_size(request, survey_id):
    survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
    k_form = MinGroupSizeForm(request.POST)
    if k_form.is_valid():
        try:
            services.survey_update(survey=survey, fields=k_form.cleaned_data)
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                k_form.add_error(field if field in k_form.fields else None, messages)
        else:
            return redirect("organizer-survey", survey_id=survey.id)
    survey.refresh_from_db()
    return _organizer_survey_page(request, survey, form=UnitsForm(), k_form=k_form, status=400)


def _organizer_survey_page(request, survey, *, form, k_form=None, status=200):
    k_form = k_form or MinGroupSizeForm(initial={"min_group_size": survey.min_group_size})
    return render(request, "reports/organizer_survey.html", {
        "survey": survey, "form": form, "k_form": k_form,
        "share_url": request.build_absolute_uri(f"/s/{survey.share_token}/"),
        "dashboard_url": request.build_absolute_uri(f"/d/{survey.dashboard_token}/"),
        "unit_count": selectors.unit_list(survey=survey).count(),
        "batch_ready": selectors.report_batch_ready(survey=survey),
        "next_publication": slots.next_publication(),
        **dashboard_context(request, survey)[0],
    }, status=status)


@login_required
@require_http_methods(["POST"])
def organizer_units_csv(request, survey_id):
    survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
    form = UnitsCsvForm(request.POST, request.FILES)
    try:
        if not form.is_valid():
            raise ValidationError(form.errors)
        count = services.units_import_csv(survey=survey, text=form.cleaned_data["file"])
    except ValidationError as error:
        for message in error.messages:
            notices.error(request, message)
    else:
        notices.success(request, ngettext("Loaded %(n)d unit.", "Loaded %(n)d units.", count)
                         % {"n": count})
    return redirect("organizer-survey", survey_id=survey.id)


@never_cache
@login_required
@require_http_methods(["POST"])
def organizer_invites_csv(request, survey_id):
    """New invite codes as a CSV download: the only time they are shown."""
    survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
    form = InvitesForm(request.POST)
    if not form.is_valid():
        for message in form.errors.get("count", []):
            notices.error(request, message)
        return redirect("organizer-survey", survey_id=survey.id)
    codes = services.invites_create(survey=survey, count=form.cleaned_data["count"])
    response = HttpResponse("invite_code\r\n" + "".join(f"{code}\r\n" for code in codes),
                            content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="invite-codes.csv"'
    response["Cache-Control"] = "no-store"
    return response
