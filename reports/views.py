"""Dashboard pages and downloads. The shared page and the organizer's page render the same
`selectors.dashboard`, and the downloads are `selectors.export_document`."""

import html
import json

from django import forms
from django.contrib import messages as notices
from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from reports import charts, comments, exports, selectors
from server.http import no_referrer
from surveys import selectors as survey_selectors
from surveys import services as survey_services


class DashboardQuery(forms.Form):
    unit = forms.CharField(required=False, max_length=1000)
    start = forms.DateField(required=False, label=_("From"))
    end = forms.DateField(required=False, label=_("To"))

    def clean(self):
        values = super().clean()
        if values.get("start") and values.get("end") and values["start"] > values["end"]:
            self.add_error("end", _("The end must not be before the start."))
        return values


def unit_options(units: list[str]) -> SafeString:
    """The unit filter's choices: every unit of the tree, whoever reported there, so the list
    says nothing about where anyone reported. Up to 20,000 of them, so built here rather
    than in a template loop."""
    return mark_safe(  # noqa: S308 - every unit is escaped
        "".join(f'<option value="{html.escape(unit)}">' for unit in units))


def dashboard_context(request, survey) -> tuple[dict, int]:
    """The dashboard for the request's filters, and the status to answer with."""
    query = DashboardQuery(request.GET or None)
    filters = {}
    status = 200
    if query.is_bound:
        if query.is_valid():
            values = query.cleaned_data
            filters = {"unit": values["unit"] or None, "start": values["start"],
                       "end": values["end"]}
        else:
            status = 400
    board = selectors.dashboard(survey=survey, **filters)
    granularity = survey.period
    selected = board.selected_unit
    open_units = set()
    if selected:
        parts = selected.split("/")
        open_units = {"/".join(parts[:depth]) for depth in range(1, len(parts) + 1)}
    else:
        open_units = {node.unit for node in board.heatmap}
    timeline_label = (f"Reports per period in {selected}" if selected
                      else "Reports per period, all units")
    return {
        "dashboard": board, "query": query, "unit_options": unit_options(board.units),
        # Closed with fewer than k new reports held: no publication will come.
        "final_figures": not survey.is_open and not survey_selectors.report_batch_ready(
            survey=survey),
        "timeline_svg": charts.bar_chart(board.timeline.bars, granularity=granularity,
                                         k=board.k, chart_id="timeline", label=timeline_label),
        "timeline_label": timeline_label,
        "comment_sets": comments.comment_sets(survey=survey),
        "heatmap_html": charts.heatmap(board.heatmap, periods=board.periods,
                                       granularity=granularity, k=board.k,
                                       open_units=open_units),
    }, status


@no_referrer
@never_cache
@require_GET
def shared_dashboard(request, dashboard_token):
    survey = survey_selectors.survey_by_dashboard_token(token=dashboard_token)
    context, status = dashboard_context(request, survey)
    return render(request, "reports/shared_dashboard.html", {"survey": survey, **context},
                  status=status)


def _download(body: str, *, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def organizer_export_csv(request, survey_id):
    survey = survey_selectors.survey_get(owner=request.user, survey_id=survey_id)
    document = selectors.export_document(survey=survey)
    return _download(exports.export_csv(document), content_type="text/csv; charset=utf-8",
                     filename=f"chorus-{survey.id}.csv")


@login_required
@require_GET
def organizer_export_json(request, survey_id):
    survey = survey_selectors.survey_get(owner=request.user, survey_id=survey_id)
    document = selectors.export_document(survey=survey)
    return _download(json.dumps(document, cls=DjangoJSONEncoder, indent=2),
                     content_type="application/json", filename=f"chorus-{survey.id}.json")


@login_required
@require_POST
def organizer_dashboard_link_rotate(request, survey_id):
    survey = survey_selectors.survey_get(owner=request.user, survey_id=survey_id)
    survey_services.survey_dashboard_token_rotate(survey=survey)
    notices.success(request, _("The dashboard link is new: the old one no longer opens the "
                               "dashboard."))
    return redirect("organizer-survey", survey_id=survey.id)
