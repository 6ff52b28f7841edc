from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import TemplateView
from django.views.i18n import set_language
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from reports import api as report_api
from reports import organizer as organizer_views
from reports import views as report_views
from server import auth
from surveys import api as survey_api
from surveys import views as survey_views

# Django tries patterns in order, so the busiest route, report intake, comes first here
# and api/v1/ first in urlpatterns.
api_v1 = [
    path("s/<str:share_token>/reports/", survey_api.ReportCreateApi.as_view(),
         name="api-report-create"),
    path("s/<str:share_token>/token-key/", survey_api.TokenKeyApi.as_view(),
         name="api-token-key"),
    path("s/<str:share_token>/verification/", survey_api.VerificationApi.as_view(),
         name="api-verification"),
    path("s/<str:share_token>/tokens/", survey_api.TokenIssueApi.as_view(), name="api-tokens"),
    path("auth/token/", survey_api.AuthTokenApi.as_view(), name="api-auth-token"),
    path("signals/", survey_api.SignalsApi.as_view(), name="api-signals"),
    path("surveys/", survey_api.SurveyCollectionApi.as_view(), name="api-surveys"),
    path("surveys/<uuid:survey_id>/", survey_api.SurveyDetailApi.as_view(), name="api-survey"),
    path("surveys/<uuid:survey_id>/units/", survey_api.UnitsApi.as_view(), name="api-units"),
    path("surveys/<uuid:survey_id>/units/csv/", survey_api.UnitsCsvApi.as_view(),
         name="api-units-csv"),
    path("surveys/<uuid:survey_id>/invites/", survey_api.InvitesApi.as_view(),
         name="api-invites"),
    path("surveys/<uuid:survey_id>/aggregates/", report_api.SurveyAggregatesApi.as_view(),
         name="api-survey-aggregates"),
    path("surveys/<uuid:survey_id>/rebuild/", report_api.RebuildApi.as_view(),
         name="api-survey-rebuild"),
    path("surveys/<uuid:survey_id>/jobs/<uuid:job_id>/", report_api.JobDetailApi.as_view(),
         name="api-survey-job"),
    path("surveys/<uuid:survey_id>/detections/", report_api.DetectionsApi.as_view(),
         name="api-survey-detections"),
    path("surveys/<uuid:survey_id>/clusters/", report_api.SurveyClustersApi.as_view(),
         name="api-survey-clusters"),
    path("d/<str:dashboard_token>/clusters/", report_api.SharedClustersApi.as_view(),
         name="api-shared-clusters"),
    path("s/<str:share_token>/reports/<str:receipt>/", survey_api.ReportAmendApi.as_view(),
         name="api-report-withdraw"),
    path("d/<str:dashboard_token>/aggregates/", report_api.SharedAggregatesApi.as_view(),
         name="api-shared-aggregates"),
    path("surveys/<uuid:survey_id>/export/", report_api.SurveyExportApi.as_view(),
         name="api-survey-export"),
    path("d/<str:dashboard_token>/export/", report_api.SharedExportApi.as_view(),
         name="api-shared-export"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    # Exempt from CSRF: all it can do is set the language cookie, and respondent pages send
    # no referrer (so browsers send `Origin: null`, which the CSRF check refuses).
    path("i18n/setlang/", csrf_exempt(set_language), name="set_language"),
    path("accounts/login/", auth.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("organizer/", organizer_views.organizer_surveys, name="organizer-surveys"),
    path("organizer/surveys/<uuid:survey_id>/", organizer_views.organizer_survey,
         name="organizer-survey"),
    path("organizer/surveys/<uuid:survey_id>/settings/",
         organizer_views.organizer_survey_settings, name="organizer-survey-settings"),
    path("organizer/surveys/<uuid:survey_id>/status/",
         organizer_views.organizer_survey_status, name="organizer-survey-status"),
    path("organizer/surveys/<uuid:survey_id>/units/remove/",
         organizer_views.organizer_unit_remove, name="organizer-unit-remove"),
    path("organizer/surveys/<uuid:survey_id>/share-link/",
         organizer_views.organizer_share_link_rotate, name="organizer-share-rotate"),
    path("organizer/surveys/<uuid:survey_id>/min-group-size/",
         organizer_views.organizer_min_group_size, name="organizer-min-group-size"),
    path("organizer/surveys/<uuid:survey_id>/units.csv", organizer_views.organizer_units_csv,
         name="organizer-units-csv"),
    path("organizer/surveys/<uuid:survey_id>/invites.csv", organizer_views.organizer_invites_csv,
         name="organizer-invites-csv"),
    path("organizer/surveys/<uuid:survey_id>/export.csv", report_views.organizer_export_csv,
         name="organizer-export-csv"),
    path("organizer/surveys/<uuid:survey_id>/export.json", report_views.organizer_export_json,
         name="organizer-export-json"),
    path("organizer/surveys/<uuid:survey_id>/dashboard-link/",
         report_views.organizer_dashboard_link_rotate, name="organizer-dashboard-rotate"),
    path("s/<str:share_token>/", survey_views.respondent_form, name="respondent-form"),
    path("s/<str:share_token>/withdraw/", survey_views.respondent_withdraw,
         name="respondent-withdraw"),
    path("s/<str:share_token>/amend/", survey_views.respondent_amend, name="respondent-amend"),
    path("d/<str:dashboard_token>/", report_views.shared_dashboard, name="shared-dashboard"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

handler400 = "server.errors.bad_request"
handler404 = "server.errors.page_not_found"
handler500 = "server.errors.server_error"
