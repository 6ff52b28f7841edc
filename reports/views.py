from django.shortcuts import render
from django.views.decorators.cache import never_cache

from reports import selectors
from surveys import selectors as survey_selectors


@never_cache
def shared_dashboard(request, dashboard_token):
    survey = survey_selectors.survey_by_dashboard_token(token=dashboard_token)
    return render(request, "reports/shared_dashboard.html",
                  {"survey": survey, "table": selectors.dashboard_table(survey=survey)})
