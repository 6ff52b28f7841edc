"""Dashboard API: the organizer's view and the shared read-only view return
the same released figures."""

from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from reports import detection, jobs, selectors
from surveys import selectors as survey_selectors


class AggregatesOutput(serializers.Serializer):
    class CellOutput(serializers.Serializer):
        unit = serializers.CharField()
        period = serializers.DateField()
        reports = serializers.IntegerField(
            allow_null=True, help_text="At least min_group_size, or null when withheld: fewer "
                                       "than min_group_size (0 included) or protecting one.")
        suppressed = serializers.BooleanField()

    class UnitTotalOutput(serializers.Serializer):
        unit = serializers.CharField()
        reports = serializers.IntegerField(allow_null=True)
        suppressed = serializers.BooleanField()

    class BreakdownOutput(serializers.Serializer):
        unit = serializers.CharField()
        period = serializers.DateField()
        signals = serializers.DictField(child=serializers.IntegerField())
        outcomes = serializers.DictField(child=serializers.IntegerField())

    min_group_size = serializers.IntegerField()
    cells = CellOutput(many=True, help_text="Every unit of the tree in every period.")
    units = UnitTotalOutput(many=True, help_text="Reports per unit over all periods.")
    breakdowns = BreakdownOutput(
        many=True, help_text="Released signal and outcome counts per cell; a code that is "
                             "absent is hidden in that cell.")


class AggregatesFilterInput(serializers.Serializer):
    """The aggregates filters; ``from`` and ``to`` are Python keywords, hence get_fields."""

    def get_fields(self):
        return {
            "unit": serializers.CharField(required=False, max_length=1000),
            "from": serializers.DateField(required=False),
            "to": serializers.DateField(required=False),
        }

    # A range with from after to is empty, not malformed: it answers no periods.


AGGREGATES_FILTERS = [
    OpenApiParameter("unit", {"type": "string", "minLength": 1, "maxLength": 1000},
                     description=_(
        "A unit's path: only that unit and the units below it.")),
    OpenApiParameter("from", OpenApiTypes.DATE, description=_(
        "Only periods starting on or after this date.")),
    OpenApiParameter("to", OpenApiTypes.DATE, description=_(
        "Only periods starting on or before this date.")),
]


def _aggregates(request, survey) -> HttpResponse:
    # The body is rendered in AggregatesOutput's shape once per publication, by the task that
    # publishes; an unfiltered read only sends it, a filtered one drops released rows.
    # A plain dict, so an empty value is a bad value rather than an omitted one.
    query = AggregatesFilterInput(data=request.query_params.dict())
    unknown = set(request.query_params) - set(query.fields)
    if unknown:
        # A misspelt filter would otherwise answer the whole table as if it had applied.
        raise ValidationError({name: [_("Unknown parameter.")] for name in sorted(unknown)})
    query.is_valid(raise_exception=True)
    filters = query.validated_data
    try:
        body = selectors.aggregates_json(survey=survey, unit=filters.get("unit"),
                                         start=filters.get("from"), end=filters.get("to"))
    except selectors.UnknownUnit:
        # A well-formed path naming no unit is a missing resource, not malformed input.
        raise NotFound({"unit": [_("No unit with this path in the survey.")]}) from None
    return HttpResponse(body, content_type="application/json")


P_VALUE_BANDS = [text for _, text in selectors.P_VALUE_BANDS]


class ClusterOutput(serializers.Serializer):
    """One released cluster: every number in it is a released count, a sum of released
    counts, or a function of them; the p-value is a band."""

    class SignalOutput(serializers.Serializer):
        code = serializers.CharField()
        count = serializers.IntegerField(help_text="Reports in the cluster carrying it: a sum "
                                                   "of released signal counts.")
        percent = serializers.IntegerField(help_text="Of the cluster's reports, rounded.")
        baseline_percent = serializers.IntegerField(
            allow_null=True, help_text="Of every report outside the cluster, rounded; null "
                                       "when the organisation's count is not released.")
        lift = serializers.FloatField(allow_null=True,
                                      help_text="Share against baseline share, one decimal.")

    model = serializers.CharField()
    scope = serializers.ChoiceField(choices=["company", "unit"])
    unit = serializers.CharField()
    start = serializers.DateField(help_text="First day of the first period.")
    end = serializers.DateField(help_text="First day of the last period.")
    last_day = serializers.DateField(help_text="Last day of the last period.")
    reports = serializers.IntegerField(
        allow_null=True, help_text="Released reports of the unit over the window (their sum); "
                                   "null when one of them is hidden.")
    ratio = serializers.FloatField(
        allow_null=True, help_text="The unit's reports in the window against what the rest of "
                                   "the organisation's rate predicts, from released counts, "
                                   "one decimal; null when they are not all released.")
    p_value = serializers.ChoiceField(choices=P_VALUE_BANDS,
                                      help_text="Band of the adjusted p-value.")
    signals = SignalOutput(many=True)
    attrition_signature = serializers.BooleanField()
    summary = serializers.CharField()
    verdict = serializers.CharField(
        help_text="How likely chance alone is to explain the cluster, in words, for its band.")
    sentence = serializers.CharField()


class DetectableOutput(serializers.Serializer):
    """How large a drive seen in counts alone must be for the last run to find it 8 times
    in 10 (reports.detectable), per unit size: worked out from the run's critical value and
    the released total only."""

    people = serializers.IntegerField(allow_null=True,
                                      help_text="A unit of this many people (with headcounts).")
    share = serializers.FloatField(allow_null=True,
                                   help_text="Or a unit with this share of the reports.")
    relative_risk = serializers.FloatField(
        allow_null=True, help_text="Times the unit's usual rate of reports; null: more than "
                                   "12 times.")
    periods = serializers.IntegerField(help_text="The drive's length in periods.")


class ExportOutput(serializers.Serializer):
    survey = serializers.CharField()
    min_group_size = serializers.IntegerField()
    published_at = serializers.DateTimeField(allow_null=True)
    next_publication_at = serializers.DateTimeField(allow_null=True)
    overview = serializers.JSONField()
    periods = serializers.ListField(child=serializers.DateField())
    timeline = serializers.JSONField()
    cells = serializers.JSONField()
    units = serializers.JSONField()
    clusters = ClusterOutput(many=True)
    detectable = DetectableOutput(many=True)
    membership = serializers.JSONField(
        help_text='How reports were admitted: {} (link), {"access": "invite"}, or '
                  '{"access": "verified", "domains": [...], "addresses_at_least": L}, L a '
                  "multiple of k and a lower bound only.")


class SurveyExportApi(APIView):
    @extend_schema(
        summary=_("Export a survey's released figures"),
        description=_("Everything the organizer's dashboard shows, as plain data: "
                      "released cells, unit totals, the timeline, clusters and "
                      "comment sets. Hidden figures are null."),
        responses={200: ExportOutput})
    def get(self, request, survey_id):
        survey = survey_selectors.survey_get(owner=request.user, survey_id=survey_id)
        return Response(selectors.export_document(survey=survey))


class SharedExportApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        summary=_("Export a shared dashboard's figures"),
        description=_("The export of the survey behind a dashboard link, with no "
                      "account: the same released figures the shared dashboard shows."),
        responses={200: ExportOutput}, auth=[])
    def get(self, request, dashboard_token):
        survey = survey_selectors.survey_by_dashboard_token(token=dashboard_token)
        return Response(selectors.export_document(survey=survey))


class SurveyAggregatesApi(APIView):
    @extend_schema(
        summary=_("Read a survey's released aggregates"),
        description=_("The released report, signal and outcome counts per unit and "
                      "period as of the last publication. A hidden count is null. The "
                      "filters narrow the released rows; they never release more."),
        parameters=AGGREGATES_FILTERS, responses={200: AggregatesOutput})
    def get(self, request, survey_id):
        survey = survey_selectors.survey_get(owner=request.user, survey_id=survey_id)
        return _aggregates(request, survey)


class SharedAggregatesApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        summary=_("Read a shared dashboard's aggregates"),
        description=_("The released aggregates of the survey behind a dashboard link,"
                      " with no account. The filters narrow the released rows; they never "
                      "release more."),
        parameters=AGGREGATES_FILTERS, responses={200: AggregatesOutput}, auth=[])
    def get(self, request, dashboard_token):
        survey = survey_selectors.survey_by_dashboard_token(token=dashboard_token)
        return _aggregates(request, survey)


class JobStartedOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()


class RebuildApi(APIView):
    @extend_schema(
        summary=_("Rebuild a survey's counts"),
        description=_("Starts a job that recounts every cell from the stored reports."
                      " Answers with the job to poll."),
        request=None, responses={202: JobStartedOutput})
    def post(self, request, survey_id):
        survey = survey_selectors.survey_get(owner=request.user, survey_id=survey_id)
        job = jobs.rebuild_start(survey=survey)
        return Response(JobStartedOutput(job).data, status=status.HTTP_202_ACCEPTED)


class JobDetailApi(APIView):
    class Output(serializers.Serializer):
        id = serializers.UUIDField()
        kind = serializers.CharField()
        status = serializers.CharField()
        progress = serializers.FloatField()
        error = serializers.CharField(help_text="Why a failed job failed; empty otherwise.")

    @extend_schema(
        summary=_("Read a job"),
        description=_("The status and progress of a rebuild or detection job of this "
                      "survey."),
        responses={200: Output})
    def get(self, request, survey_id, job_id):
        survey = survey_selectors.survey_get(owner=request.user, survey_id=survey_id)
        job = jobs.job_get(survey=survey, job_id=job_id)
        return Response(self.Output(job).data)


class DetectionsApi(APIView):
    class Input(serializers.Serializer):
        replicas = serializers.IntegerField(min_value=detection.MIN_REPLICAS,
                                            max_value=detection.MAX_REPLICAS,
                                            default=detection.DEFAULT_REPLICAS)
        seed = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False)
        models = serializers.ListField(
            child=serializers.ChoiceField(choices=detection.scan.MODELS), required=False,
            allow_empty=False, max_length=len(detection.scan.MODELS),
            help_text="Defaults to the profile_floor model (counts against a half-way "
                      "time profile and, on cuts with two or more pattern reports, the "
                      "signature, scored as one statistic). Several models "
                      "are Bonferroni-adjusted for their number.")

    @extend_schema(
        summary=_("Start cluster detection"),
        description=_("Starts a detection job over the published figures. Answers "
                      "with the job to poll."),
        request=Input, responses={202: JobStartedOutput})
    def post(self, request, survey_id):
        survey = survey_selectors.survey_get(owner=request.user, survey_id=survey_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        run = detection.detection_start(survey=survey, **data.validated_data)
        return Response(JobStartedOutput(run.job).data, status=status.HTTP_202_ACCEPTED)


class ClustersOutput(serializers.Serializer):
    class RunOutput(serializers.Serializer):
        id = serializers.UUIDField()
        finished = serializers.DateTimeField()
        replicas = serializers.IntegerField()
        seed = serializers.IntegerField()

    run = RunOutput(allow_null=True)
    clusters = ClusterOutput(
        many=True, help_text="Only clusters at the significance level (adjusted p at most "
                             "0.05), and only where the released counts already show at least "
                             "the minimum group size in them; none is not evidence that "
                             "nothing happened.")
    detectable = DetectableOutput(many=True)


class SurveyClustersApi(APIView):
    @extend_schema(
        summary=_("Read a survey's released clusters"),
        description=_("Clusters found by the last detection run, released like every "
                      "other figure."),
        responses={200: ClustersOutput})
    def get(self, request, survey_id):
        survey = survey_selectors.survey_get(owner=request.user, survey_id=survey_id)
        return Response(ClustersOutput(selectors.clusters_document(survey=survey)).data)


class SharedClustersApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        summary=_("Read a shared dashboard's clusters"),
        description=_("The released clusters of the survey behind a dashboard link, "
                      "with no account."),
        responses={200: ClustersOutput}, auth=[])
    def get(self, request, dashboard_token):
        survey = survey_selectors.survey_by_dashboard_token(token=dashboard_token)
        return Response(ClustersOutput(selectors.clusters_document(survey=survey)).data)
