"""The organizer's pages: their surveys, one survey's settings and tree, and the survey's
dashboard. They live here, downstream of intake, because they read analytics (the dashboard,
publication times) as well as the survey."""

import segno
from django.contrib import messages as notices
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from reports.views import dashboard_context
from surveys import selectors, services, slots
from surveys.forms import (
    InvitesForm,
    MinGroupSizeForm,
    SurveyCreateForm,
    SurveySettingsForm,
    UnitsCsvForm,
    UnitsForm,
)
from surveys.models import OrgUnit, Survey

# Units listed on the survey page; a larger tree is counted in full, listed in part.
TREE_SHOWN = 500


def _add_service_errors(form, error: ValidationError) -> None:
    """A service's field errors under the form's fields, the rest above the form."""
    for field, messages in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages)


def qr_svg(url: str, *, label: str) -> SafeString:
    """The link as a QR code: an inline SVG of attributes only (no style, so the content
    policy allows it), drawn here, so no image is fetched from anywhere."""
    svg = segno.make(url, error="m").svg_inline(
        scale=4, border=2, dark="#111", light="#fff", svgclass="qr", lineclass=None)
    # segno writes only its own markup and path data; the label is escaped.
    return format_html('<svg role="img" aria-label="{}" {}', label,
                       mark_safe(svg.removeprefix("<svg ")))  # noqa: S308


@login_required
def organizer_surveys(request):
    form = SurveyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            survey = services.survey_create(owner=request.user, **form.cleaned_data)
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            notices.success(request, _("Survey created. Load its units next, then share the "
                                       "link."))
            return redirect("organizer-survey", survey_id=survey.id)
    status = 400 if request.method == "POST" else 200
    return render(request, "reports/organizer_list.html",
                  {"surveys": selectors.survey_list(owner=request.user), "form": form},
                  status=status)


@login_required
def organizer_survey(request, survey_id):
    survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
    form = UnitsForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            count = services.units_upsert(survey=survey, units=form.cleaned_data["units"])
        except ValidationError as error:
            form.add_error("units", [f"{key}: {'; '.join(messages)}"
                                     for key, messages in error.message_dict.items()])
        else:
            notices.success(request, ngettext("Saved %(n)d unit.", "Saved %(n)d units.", count)
                            % {"n": count})
            return redirect("organizer-survey", survey_id=survey.id)
    status = 400 if request.method == "POST" else 200
    return _organizer_survey_page(request, survey, form=form, status=status)


def _survey_change(request, survey_id, *, form_class, saved: str, form_name: str):
    """A POST of one of the survey page's forms through survey_update: saved, a message and
    back to the page; refused, the page again with the errors under their fields."""
    survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
    form = form_class(request.POST)
    if form.is_valid():
        try:
            services.survey_update(survey=survey, fields=form.cleaned_data)
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            notices.success(request, saved)
            return redirect("organizer-survey", survey_id=survey.id)
    survey.refresh_from_db()
    return _organizer_survey_page(request, survey, form=UnitsForm(), status=400,
                                  **{form_name: form})


@login_required
@require_http_methods(["POST"])
def organizer_min_group_size(request, survey_id):
    return _survey_change(request, survey_id, form_class=MinGroupSizeForm,
                          saved=_("Minimum group size saved."), form_name="k_form")


@login_required
@require_http_methods(["POST"])
def organizer_survey_settings(request, survey_id):
    return _survey_change(request, survey_id, form_class=SurveySettingsForm,
                          saved=_("Settings saved."), form_name="settings_form")


@login_required
@require_http_methods(["POST"])
def organizer_survey_status(request, survey_id):
    """Closes or reopens the survey (`status` open or closed)."""
    survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
    wanted = request.POST.get("status")
    if wanted not in Survey.Status.values:
        notices.error(request, _("Choose to close or to reopen the survey."))
        return redirect("organizer-survey", survey_id=survey.id)
    fields = {"status": wanted}
    if wanted == Survey.Status.OPEN and survey.closes_on is not None and not survey.is_open:
        # Reopening a survey past its last day would leave it closed: the day goes too.
        fields["closes_on"] = None
    services.survey_update(survey=survey, fields=fields)
    notices.success(request, _("The survey takes reports again.") if wanted == Survey.Status.OPEN
                    else _("The survey is closed: the form no longer takes reports. The "
                           "dashboard stays as it is."))
    return redirect("organizer-survey", survey_id=survey.id)


@login_required
@require_http_methods(["POST"])
def organizer_unit_remove(request, survey_id):
    """Takes a unit with everything below it off the form (services.units_retire)."""
    survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
    path = request.POST.get("path", "").strip()
    try:
        count = services.units_retire(survey=survey, path=path)
    except OrgUnit.DoesNotExist:
        notices.error(request, _("No unit %(path)s on this survey's form.") % {"path": path})
    else:
        below = count - 1
        notices.success(request, (ngettext(
            "Removed %(path)s and the unit below it from the form.",
            "Removed %(path)s and the %(below)d units below it from the form.", below)
            if below else _("Removed %(path)s from the form.")) % {"path": path, "below": below})
    return redirect("organizer-survey", survey_id=survey.id)


@login_required
@require_http_methods(["POST"])
def organizer_share_link_rotate(request, survey_id):
    survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
    services.survey_share_token_rotate(survey=survey)
    notices.success(request, _("The share link is new: the old one no longer opens the form. "
                               "Send the new one to your coworkers."))
    return redirect("organizer-survey", survey_id=survey.id)


def _organizer_survey_page(request, survey, *, form, k_form=None, settings_form=None,
                           csv_errors=(), status=200):
    k_form = k_form or MinGroupSizeForm(initial={"min_group_size": survey.min_group_size})
    settings_form = settings_form or SurveySettingsForm(initial={
        "title": survey.title, "access": survey.access, "closes_on": survey.closes_on,
        "email_domains": ", ".join(survey.email_domains)})
    share_url = request.build_absolute_uri(f"/s/{survey.share_token}/")
    dashboard_url = request.build_absolute_uri(f"/d/{survey.dashboard_token}/")
    tree = selectors.unit_tree_summary(survey=survey, shown=TREE_SHOWN)
    return render(request, "reports/organizer_survey.html", {
        "survey": survey, "form": form, "k_form": k_form, "settings_form": settings_form,
        "share_url": share_url, "dashboard_url": dashboard_url,
        "share_qr": qr_svg(share_url, label=_("QR code of the share link")),
        "dashboard_qr": qr_svg(dashboard_url, label=_("QR code of the dashboard link")),
        "tree": tree, "csv_errors": csv_errors,
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
            raise ValidationError(form.errors.get("file", []))
        count = services.units_import_csv(survey=survey, text=form.cleaned_data["file"])
    except ValidationError as error:
        # Under the file control that caused them, with the rest of the page as it was.
        return _organizer_survey_page(request, survey, form=UnitsForm(),
                                      csv_errors=error.messages, status=400)
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
