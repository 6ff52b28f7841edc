"""HTTP API for organizers (token or session auth) and anonymous respondents.

Each view handles one resource; each method is one operation with its own
nested input and output serializers. Views parse, call a service or a
selector, and render: no rules live here.
"""

from django.conf import settings
from django.contrib.auth import authenticate
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import APIException, AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from surveys import catalog, selectors, services
from surveys.models import Survey

MAX_REPORT_BODY_BYTES = 16 * 1024


class Gone(APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "This survey is closed and no longer takes reports."
    default_code = "gone"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def absolute_url(request, name: str, token: str) -> str:
    path = reverse(name, args=[token])
    if settings.CHORUS_PUBLIC_URL:
        return settings.CHORUS_PUBLIC_URL.rstrip("/") + path
    return request.build_absolute_uri(path)


class SurveyOutput(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    period = serializers.ChoiceField(choices=Survey.Period.choices)
    min_group_size = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Survey.Status.choices)
    access = serializers.ChoiceField(choices=Survey.Access.choices)
    share_url = serializers.SerializerMethodField()
    dashboard_url = serializers.SerializerMethodField()

    def get_share_url(self, survey) -> str:
        return absolute_url(self.context["request"], "respondent-form", survey.share_token)

    def get_dashboard_url(self, survey) -> str:
        return absolute_url(self.context["request"], "shared-dashboard", survey.dashboard_token)


class AuthTokenApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    class Input(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=256, trim_whitespace=False)

    class Output(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(request=Input, responses={200: Output}, auth=[])
    def post(self, request):
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise AuthenticationFailed("Unknown username or wrong password.")
        token, _ = Token.objects.get_or_create(user=user)
        return Response(self.Output({"token": token.key}).data)


class SurveyCollectionApi(APIView):
    class CreateInput(serializers.Serializer):
        title = serializers.CharField(max_length=200)
        period = serializers.ChoiceField(choices=Survey.Period.choices, default="month")
        min_group_size = serializers.IntegerField(default=5, min_value=3, max_value=1000)
        access = serializers.ChoiceField(choices=Survey.Access.choices, default="link")

    @extend_schema(responses={200: SurveyOutput(many=True)})
    def get(self, request):
        surveys = selectors.survey_list(owner=request.user)
        return Response(SurveyOutput(surveys, many=True, context={"request": request}).data)

    @extend_schema(request=CreateInput, responses={201: SurveyOutput})
    def post(self, request):
        data = self.CreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        survey = services.survey_create(owner=request.user, **data.validated_data)
        return Response(SurveyOutput(survey, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class SurveyDetailApi(APIView):
    class UpdateInput(serializers.Serializer):
        title = serializers.CharField(max_length=200, required=False)
        status = serializers.ChoiceField(choices=Survey.Status.choices, required=False)
        access = serializers.ChoiceField(choices=Survey.Access.choices, required=False)
        min_group_size = serializers.IntegerField(min_value=3, max_value=1000, required=False)
        period = serializers.ChoiceField(choices=Survey.Period.choices, required=False)

    @extend_schema(responses={200: SurveyOutput})
    def get(self, request, survey_id):
        survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
        return Response(SurveyOutput(survey, context={"request": request}).data)

    @extend_schema(request=UpdateInput, responses={200: SurveyOutput})
    def patch(self, request, survey_id):
        survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
        data = self.UpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        survey = services.survey_update(survey=survey, fields=data.validated_data)
        return Response(SurveyOutput(survey, context={"request": request}).data)


class UnitsApi(APIView):
    class UnitInput(serializers.Serializer):
        path = serializers.CharField(max_length=services.MAX_PATH_LENGTH, trim_whitespace=True)
        headcount = serializers.IntegerField(min_value=0, max_value=10_000_000, required=False,
                                             allow_null=True)

    class ReplaceInput(serializers.Serializer):
        units = serializers.ListField(allow_empty=False, max_length=services.MAX_UNITS)

    class ReplaceOutput(serializers.Serializer):
        units = serializers.IntegerField()

    class UnitOutput(serializers.Serializer):
        path = serializers.CharField()
        headcount = serializers.IntegerField(allow_null=True)

    @extend_schema(responses={200: UnitOutput(many=True)})
    def get(self, request, survey_id):
        survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
        units = selectors.unit_list(survey=survey).only("path", "headcount")
        return Response(self.UnitOutput(units, many=True).data)

    @extend_schema(request=ReplaceInput, responses={200: ReplaceOutput})
    def put(self, request, survey_id):
        survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
        data = self.ReplaceInput(data=request.data)
        data.is_valid(raise_exception=True)
        units = self.UnitInput(data=data.validated_data["units"], many=True)
        if not units.is_valid():
            raise serializers.ValidationError({"units": units.errors})
        count = services.units_upsert(survey=survey, units=units.validated_data)
        return Response(self.ReplaceOutput({"units": count}).data)


class SignalsApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    class Output(serializers.Serializer):
        code = serializers.CharField()
        label = serializers.CharField()
        description = serializers.CharField()

    @extend_schema(responses={200: Output(many=True)}, auth=[])
    def get(self, request):
        return Response(self.Output(catalog.SIGNALS, many=True).data)


class ReportCreateApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    class Input(serializers.Serializer):
        unit = serializers.CharField(max_length=services.MAX_PATH_LENGTH)
        period = serializers.DateField()
        signals = serializers.ListField(child=serializers.CharField(max_length=64),
                                        max_length=len(catalog.SIGNAL_CODES) * 2)
        outcome = serializers.CharField(max_length=64, required=False, allow_blank=True,
                                        allow_null=True, default="")
        comment = serializers.CharField(max_length=2000, required=False, allow_blank=True,
                                        allow_null=True, default="")

    class Output(serializers.Serializer):
        receipt = serializers.CharField()

    @extend_schema(request=Input, responses={201: Output}, auth=[])
    def post(self, request, share_token):
        if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_REPORT_BODY_BYTES:
            raise PayloadTooLarge
        survey = selectors.survey_by_share_token(token=share_token)
        if not survey.is_open:
            raise Gone
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        draft = services.ReportDraft(
            unit=values["unit"], period=values["period"], signals=tuple(values["signals"]),
            outcome=values["outcome"] or "", comment=values["comment"] or "")
        try:
            receipt = services.report_create(survey=survey, draft=draft)
        except services.SurveyClosed as closed:
            raise Gone from closed
        return Response(self.Output({"receipt": receipt}).data, status=status.HTTP_201_CREATED)


class ReportWithdrawApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(request=None, responses={204: None}, auth=[])
    def delete(self, request, share_token, receipt):
        survey = selectors.survey_by_share_token(token=share_token)
        if not services.report_withdraw(survey=survey, receipt=receipt):
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)
