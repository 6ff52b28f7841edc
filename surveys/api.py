"""HTTP API for organizers (token or session auth) and anonymous respondents.

Each view handles one resource; each method is one operation with its own
nested input and output serializers. Views parse, call a service or a
selector, and render: no rules live here.
"""

import functools
import json
import sys

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import APIException, AuthenticationFailed, Throttled
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from server import auth
from surveys import catalog, intake, membership, ratelimit, selectors, services, tokens
from surveys.models import (
    MIN_GROUP_SIZE_FLOOR,
    MIN_GROUP_SIZE_MAX,
    REPORT_CODE_MAX_LENGTH,
    REPORT_COMMENT_MAX_LENGTH,
    REPORT_TOKEN_MAX_LENGTH,
    STUDY_WINDOW_DEFAULT_YEARS,
    STUDY_WINDOW_MAX_YEARS,
    UNIT_PATH_MAX_LENGTH,
    Survey,
)
from surveys.tasks import verification_code_mail

# 20,000 units at a generous 200 bytes a line.
MAX_CSV_BYTES = 4 * 1024 * 1024


class Gone(APIException):
    status_code = status.HTTP_410_GONE
    default_detail = _("This survey is closed and no longer takes reports.")
    default_code = "gone"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "too_large"


# Bodies for these come from server.errors.document_error_responses.
CLOSED = OpenApiResponse(description="The survey is closed.")
TOO_LARGE = OpenApiResponse(description="The request body is too large.")
THROTTLED = OpenApiResponse(description="Too many attempts; Retry-After says when to retry.")
WRONG_CREDENTIALS = OpenApiResponse(description="Unknown username or wrong password.")


class LoginThrottled(Throttled):
    default_detail = _("Too many failed logins. Please try again later.")


class SubmissionsThrottled(Throttled):
    default_detail = _("Too many reports for this survey from your network today. "
                       "Please try again tomorrow.")
    extra_detail_singular = extra_detail_plural = ""


class LookupsThrottled(Throttled):
    default_detail = _("Too many receipt look-ups for this survey from your network today. "
                       "Please try again tomorrow.")
    extra_detail_singular = extra_detail_plural = ""


def rate_limit(request, *, survey, scope: str) -> None:
    """Counts the attempt; raises 429 (with Retry-After) over the daily limit."""
    verdict = ratelimit.hit(request=request, survey_id=survey.id, scope=scope)
    if not verdict.allowed:
        throttled = SubmissionsThrottled if scope == ratelimit.SUBMIT else LookupsThrottled
        raise throttled(wait=verdict.retry_after)


def read_limited(stream, limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge
    return data


class CsvParser(BaseParser):
    """A raw `text/csv` body, bounded in size and handed over as text."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        data = read_limited(stream, MAX_CSV_BYTES) if stream is not None else b""
        return {"file": data}


def decode_csv(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise serializers.ValidationError(
            {"file": ["The file must be UTF-8 text (save it as \"CSV UTF-8\")."]}) from error


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
    email_domains = serializers.ListField(child=serializers.CharField(), help_text=(
        "For access \"verified\": the domains whose addresses may buy a token."))
    closes_on = serializers.DateField(allow_null=True)
    study_starts_on = serializers.DateField(
        help_text="Reports may name periods from the one holding this day to the current one.")
    accepting_reports = serializers.BooleanField(source="is_open")
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

    @extend_schema(
        summary=_("Get an API token"),
        description=_("Exchanges an organizer's username and password for a token to "
                      "send as `Authorization: Token <key>`."),
        request=Input, responses={200: Output, 401: WRONG_CREDENTIALS, 429: THROTTLED},
                   auth=[])
    def post(self, request):
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = auth.login_authenticate(request=request, **data.validated_data)
        except auth.LoginLocked as locked:
            raise LoginThrottled(wait=locked.retry_after) from locked
        if user is None:
            raise AuthenticationFailed("Unknown username or wrong password.")
        token, _ = Token.objects.get_or_create(user=user)
        return Response(self.Output({"token": token.key}).data)


class SurveyCollectionApi(APIView):
    class CreateInput(serializers.Serializer):
        title = serializers.CharField(max_length=200)
        period = serializers.ChoiceField(choices=Survey.Period.choices, default="month")
        min_group_size = serializers.IntegerField(default=5, min_value=MIN_GROUP_SIZE_FLOOR,
                                                  max_value=MIN_GROUP_SIZE_MAX)
        access = serializers.ChoiceField(choices=Survey.Access.choices, default="link")
        email_domains = serializers.ListField(
            child=serializers.CharField(max_length=253), max_length=membership.EMAIL_DOMAINS_MAX,
            required=False, help_text="For access \"verified\" (required then): the domains "
                                      "whose addresses may buy a membership token.")
        closes_on = serializers.DateField(required=False, allow_null=True, default=None)
        study_starts_on = serializers.DateField(
            required=False, default=None,
            help_text=f"Default: {STUDY_WINDOW_DEFAULT_YEARS} years before today; at most "
                      f"{STUDY_WINDOW_MAX_YEARS} years back, not after today.")

    @extend_schema(
        summary=_("List your surveys"),
        description=_("Every survey the organizer owns, newest first."),
        responses={200: SurveyOutput(many=True)})
    def get(self, request):
        surveys = selectors.survey_list(owner=request.user)
        return Response(SurveyOutput(surveys, many=True, context={"request": request}).data)

    @extend_schema(
        summary=_("Create a survey"),
        description=_("Creates a survey with its period, minimum group size and "
                      "access mode."),
        request=CreateInput, responses={201: SurveyOutput})
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
        email_domains = serializers.ListField(
            child=serializers.CharField(max_length=253), max_length=membership.EMAIL_DOMAINS_MAX,
            required=False, help_text="For access \"verified\" (required then): the domains "
                                      "whose addresses may buy a membership token.")
        min_group_size = serializers.IntegerField(min_value=MIN_GROUP_SIZE_FLOOR,
                                                  max_value=MIN_GROUP_SIZE_MAX, required=False)
        period = serializers.ChoiceField(choices=Survey.Period.choices, required=False)
        closes_on = serializers.DateField(required=False, allow_null=True)
        study_starts_on = serializers.DateField(
            required=False, help_text=f"At most {STUDY_WINDOW_MAX_YEARS} years back, not after "
                                      "today; once units are loaded, only earlier.")

    @extend_schema(
        summary=_("Read a survey"),
        description=_("One survey the organizer owns."),
        responses={200: SurveyOutput})
    def get(self, request, survey_id):
        survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
        return Response(SurveyOutput(survey, context={"request": request}).data)

    @extend_schema(
        summary=_("Change a survey"),
        description=_("Changes the given fields of a survey the organizer owns."),
        request=UpdateInput, responses={200: SurveyOutput})
    def patch(self, request, survey_id):
        survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
        data = self.UpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        survey = services.survey_update(survey=survey, fields=data.validated_data)
        return Response(SurveyOutput(survey, context={"request": request}).data)


class StrictCharField(serializers.CharField):
    """Text that must arrive as a JSON string: DRF would quietly turn 7 into "7"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class UnitInput(serializers.Serializer):
    path = StrictCharField(max_length=UNIT_PATH_MAX_LENGTH, trim_whitespace=True)
    headcount = serializers.IntegerField(min_value=0, max_value=10_000_000, required=False,
                                         allow_null=True)


class UnitsApi(APIView):
    class ReplaceInput(serializers.Serializer):
        units = serializers.ListField(child=UnitInput(), allow_empty=False,
                                      max_length=services.MAX_UNITS)

    class ReplaceOutput(serializers.Serializer):
        units = serializers.IntegerField()

    class UnitOutput(serializers.Serializer):
        path = serializers.CharField()
        headcount = serializers.IntegerField(allow_null=True)

    @extend_schema(
        summary=_("List a survey's units"),
        description=_("The survey's org tree, one unit per path."),
        responses={200: UnitOutput(many=True)})
    def get(self, request, survey_id):
        survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
        units = selectors.unit_list(survey=survey).only("path", "headcount")
        return Response(self.UnitOutput(units, many=True).data)

    @extend_schema(
        summary=_("Replace a survey's units"),
        description=_("Adds the given units (putting back on the form any that were "
                      "removed) and sets their headcounts; no unit is renamed or deleted, so "
                      "reports keep their unit."),
        request=ReplaceInput, responses={200: ReplaceOutput})
    def put(self, request, survey_id):
        survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
        data = self.ReplaceInput(data=request.data)
        data.is_valid(raise_exception=True)
        count = services.units_upsert(survey=survey, units=data.validated_data["units"])
        return Response(self.ReplaceOutput({"units": count}).data)


class UnitsCsvApi(APIView):
    """Loads an org tree from `path,headcount` CSV (optional header row), sent
    as a multipart "file" or as a `text/csv` body. Errors name their lines;
    a file with any error writes nothing."""

    parser_classes = [MultiPartParser, CsvParser]

    class Output(serializers.Serializer):
        units = serializers.IntegerField()

    @extend_schema(
        summary=_("Upload units as CSV"),

        request={"text/csv": {"type": "string", "format": "binary"},
                 "multipart/form-data": {"type": "object",
                                         "properties": {"file": {"type": "string",
                                                                 "format": "binary"}}}},
        responses={200: Output, 413: TOO_LARGE})
    def post(self, request, survey_id):
        survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
        upload = request.data.get("file")
        if upload is None:
            raise serializers.ValidationError({"file": [_("Send a CSV file.")]})
        if not isinstance(upload, bytes):
            if upload.size > MAX_CSV_BYTES:
                raise PayloadTooLarge
            upload = upload.read()
        count = services.units_import_csv(survey=survey, text=decode_csv(upload))
        return Response(self.Output({"units": count}).data)


class InvitesApi(APIView):
    class Input(serializers.Serializer):
        count = serializers.IntegerField(min_value=1, max_value=services.MAX_INVITES_PER_REQUEST)

    class Output(serializers.Serializer):
        codes = serializers.ListField(child=serializers.CharField())

    class CountOutput(serializers.Serializer):
        unused = serializers.IntegerField()

    @extend_schema(
        summary=_("Count unused invite codes"),
        description=_("How many invite codes of this survey are still unused."),
        responses={200: CountOutput})
    def get(self, request, survey_id):
        survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
        return Response(self.CountOutput({"unused": services.invite_unused_count(survey=survey)})
                        .data)

    @extend_schema(
        summary=_("Create invite codes"),
        request=Input, responses={201: Output})
    def post(self, request, survey_id):
        """Issues new invite codes. They are in this response only: Chorus
        keeps their hashes and cannot show them again."""
        survey = selectors.survey_get(owner=request.user, survey_id=survey_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        codes = services.invites_create(survey=survey, count=data.validated_data["count"])
        response = Response(self.Output({"codes": codes}).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class SignalsApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    class Output(serializers.Serializer):
        code = serializers.CharField()
        label = serializers.CharField()
        description = serializers.CharField()

    @extend_schema(
        summary=_("List the signals"),
        description=_("The signals a report may carry, with their labels."),
        responses={200: Output(many=True)}, auth=[])
    def get(self, request):
        return Response(self.Output(catalog.SIGNALS, many=True).data)


class ReportCreateApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    class Input(serializers.Serializer):
        unit = serializers.CharField(max_length=UNIT_PATH_MAX_LENGTH)
        period = serializers.DateField()
        signals = serializers.ListField(
            child=serializers.CharField(max_length=REPORT_CODE_MAX_LENGTH),
            max_length=intake.SIGNALS_MAX)
        outcome = serializers.CharField(max_length=REPORT_CODE_MAX_LENGTH, required=False,
                                        allow_blank=True, allow_null=True, default="")
        comment = serializers.CharField(max_length=REPORT_COMMENT_MAX_LENGTH, required=False,
                                        allow_blank=True, allow_null=True, default="")
        token = serializers.CharField(
            max_length=REPORT_TOKEN_MAX_LENGTH, required=False, allow_blank=True,
            allow_null=True, default="",
            help_text="The Privacy Pass token (RFC 9578 type 0x0002), base64url, of a "
                      "verified or invite-only survey: see token-key/ and tokens/.")

    class Output(serializers.Serializer):
        receipt = serializers.CharField()

    @extend_schema(
        summary=_("File a report"),
        request=Input, responses={201: Output, 410: CLOSED, 413: TOO_LARGE,
                                             429: THROTTLED}, auth=[])
    def post(self, request, share_token):
        """Files a report. A verified or invite-only survey needs a "token" bought at
        tokens/ (with a verified address or an invite code); a missing, bad or spent one
        answers 400 with a "token" field error. Over the daily limit per network: 429
        with Retry-After."""
        receipt = self.file(request, share_token=share_token, body=lambda: request.data)
        return Response({"receipt": receipt}, status=status.HTTP_201_CREATED)

    @classmethod
    def values(cls, body) -> dict:
        """The body's answers, validated: the lean check for a usual body, else Input."""
        values = intake.lean_values(body)
        if values is None:
            serializer = cls.Input(data=body)
            serializer.is_valid(raise_exception=True)
            values = serializer.validated_data
        return values

    @classmethod
    def file(cls, request, *, share_token: str, body) -> str:
        """intake.report_file for the body `body()` parses to, its refusals raised as the
        API answers them."""
        try:
            return intake.report_file(request=request, share_token=share_token,
                                      values=lambda: cls.values(body()))
        except intake.BodyTooLarge as refused:
            raise PayloadTooLarge from refused
        except services.SurveyClosed as closed:
            raise Gone from closed
        except intake.RateLimited as limited:
            raise SubmissionsThrottled(wait=limited.retry_after) from limited

    @classmethod
    def as_view(cls, **initkwargs):
        """The APIView, behind a path for the usual request (a POST of UTF-8
        JSON that accepts JSON) that skips DRF's per-request machinery:
        request wrapping, content negotiation, authentication, rendering.
        That machinery cost as much CPU as storing the report. Anything else
        goes to the APIView, and errors on the way are answered by it, so
        every answer, header and the schema stay the APIView's."""
        api_view = super().as_view(**initkwargs)
        allow = ", ".join(cls(**initkwargs).allowed_methods)

        @functools.wraps(api_view)
        def view(request, share_token):
            if (request.method != "POST" or request.META.get("CONTENT_TYPE") not in _JSON_TYPES
                    or request.META.get("HTTP_ACCEPT", "*/*") not in _JSON_ACCEPTS
                    or intake.body_too_large(request)):
                return api_view(request, share_token=share_token)
            try:
                body = json.loads(request.body.decode(), parse_constant=_no_constant)
            except (ValueError, RecursionError):
                # The APIView's parser answers it, with the same 400.
                return api_view(request, share_token=share_token)
            try:
                receipt = cls.file(request, share_token=share_token, body=lambda: body)
            except Exception:
                return cls._answer_error(request, share_token=share_token,
                                         initkwargs=initkwargs)
            response = HttpResponse(json.dumps({"receipt": receipt}, separators=(",", ":")),
                                    status=status.HTTP_201_CREATED,
                                    content_type="application/json")
            response["Allow"] = allow
            return response

        return view

    @classmethod
    def _answer_error(cls, request, *, share_token: str, initkwargs: dict):
        """What APIView.dispatch answers when its handler raises the exception
        being handled (which it re-raises when it has no answer for it)."""
        view = cls(**initkwargs)
        view.args, view.kwargs = (), {"share_token": share_token}
        api_request = view.initialize_request(request, share_token=share_token)
        view.request = api_request
        view.headers = view.default_response_headers
        view.format_kwarg = view.get_format_suffix(share_token=share_token)
        # As APIView.initial does: the renderer the response is rendered with.
        api_request.accepted_renderer, api_request.accepted_media_type = (
            view.perform_content_negotiation(api_request))
        response = view.handle_exception(sys.exception())
        return view.finalize_response(api_request, response)


_JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})
_JSON_ACCEPTS = frozenset({"*/*", "application/json"})


def _no_constant(name):
    # DRF's JSON parser refuses NaN and Infinity too.
    raise ValueError(name)


class ReportWithdrawApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        summary=_("Withdraw a report"),
        request=None, responses={204: None, 429: THROTTLED}, auth=[])
    def delete(self, request, share_token, receipt):
        """Withdraws the report with this receipt. Look-ups are limited per
        network and day like reports (429 with Retry-After)."""
        survey = selectors.survey_by_share_token(token=share_token)
        rate_limit(request, survey=survey, scope=ratelimit.RECEIPT)
        if not services.report_withdraw(survey=survey, receipt=receipt):
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReportAmendApi(ReportWithdrawApi):
    """The report a receipt names: DELETE withdraws it, PATCH amends it."""

    class AmendInput(serializers.Serializer):
        unit = serializers.CharField(max_length=UNIT_PATH_MAX_LENGTH, required=False)
        period = serializers.DateField(required=False)
        signals = serializers.ListField(
            child=serializers.CharField(max_length=REPORT_CODE_MAX_LENGTH),
            max_length=intake.SIGNALS_MAX, required=False)
        outcome = serializers.CharField(max_length=REPORT_CODE_MAX_LENGTH, required=False,
                                        allow_blank=True, allow_null=True)
        comment = serializers.CharField(max_length=REPORT_COMMENT_MAX_LENGTH, required=False,
                                        allow_blank=True, allow_null=True)

    class AnswersOutput(serializers.Serializer):
        unit = serializers.CharField()
        period = serializers.DateField()
        signals = serializers.ListField(child=serializers.CharField())
        outcome = serializers.CharField()
        comment = serializers.CharField()

    @extend_schema(
        summary=_("Change a report"),
        request=AmendInput, responses={200: AnswersOutput, 410: CLOSED, 413: TOO_LARGE,
                                                  429: THROTTLED}, auth=[])
    def patch(self, request, share_token, receipt):
        """Changes any of the answers of the report with this receipt and
        returns them all. Validated like a new report (400 with field errors);
        a closed survey answers 410, an unknown receipt 404. Counts against
        the same daily limit as other receipt look-ups (429)."""
        if intake.body_too_large(request):
            raise PayloadTooLarge
        survey = selectors.survey_by_share_token(token=share_token)
        if not survey.is_open:
            raise Gone
        data = self.AmendInput(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        for name in ("outcome", "comment"):
            if name in changes and changes[name] is None:
                changes[name] = ""
        rate_limit(request, survey=survey, scope=ratelimit.RECEIPT)
        try:
            report = services.report_amend(survey=survey, receipt=receipt, changes=changes)
        except services.SurveyClosed as closed:
            raise Gone from closed
        if report is None:
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        return Response(self.AnswersOutput(selectors.answers_of(report)).data)


class CodesThrottled(Throttled):
    default_detail = _("Too many codes asked for today. Please try again tomorrow.")
    extra_detail_singular = extra_detail_plural = ""


class InviteCodesThrottled(Throttled):
    default_detail = _("Too many invite codes tried from your network today. Please try "
                       "again tomorrow.")
    extra_detail_singular = extra_detail_plural = ""


def _membership_refusal(refused: membership.MembershipRefused) -> Response:
    body = ({"detail": refused.message} if refused.field == "detail"
            else {refused.field: [refused.message]})
    return Response(body, status=refused.status)


def _open_survey(share_token: str) -> Survey:
    """The open survey the share token names, for the membership endpoints: 404, or 410
    when closed."""
    survey = selectors.survey_by_share_token(token=share_token)
    if not survey.is_open:
        raise Gone
    return survey


def _open_survey_input(share_token: str, data: serializers.Serializer):
    """`_open_survey` and the validated input (400)."""
    survey = _open_survey(share_token)
    data.is_valid(raise_exception=True)
    return survey, data


class TokenKeyApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    class Output(serializers.Serializer):
        token_type = serializers.IntegerField(help_text="2: Privacy Pass blind RSA (2048-bit).")
        token_key = serializers.CharField(
            help_text="base64url of the issuer's public key, as RFC 9578 encodes it.")
        challenge = serializers.CharField(
            help_text="base64url of the TokenChallenge (RFC 9577) a token must answer.")

    @extend_schema(
        summary=_("Read a survey's token key"),
        description=_("The public key that signs this survey's membership tokens and the "
                      "challenge a token answers. 404 unless the survey is verified or "
                      "invite-only."),
        responses={200: Output, 410: CLOSED}, auth=[])
    def get(self, request, share_token):
        survey = _open_survey(share_token)
        try:
            issuer = membership.issuer_of(survey)
        except membership.MembershipRefused as refused:
            return _membership_refusal(refused)
        return Response({"token_type": tokens.TOKEN_TYPE,
                         "token_key": tokens.b64url_encode(bytes(issuer.token_key)),
                         "challenge": tokens.b64url_encode(membership.challenge_of(survey))})


class VerificationApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    class Input(serializers.Serializer):
        email = serializers.EmailField(max_length=membership.ADDRESS_MAX_LENGTH)

    @extend_schema(
        summary=_("Mail a one-time code to a work address"),
        description=_("Sends a code, valid for 30 minutes, to an address at one of the "
                      "survey's domains: 202 for any such address (whether or not it already "
                      "has its token), 400 for any other. The employer's mail system sees "
                      "that a message from this service arrived. Limited per address and per "
                      "network and day (429 with Retry-After)."),
        request=Input, responses={202: None, 410: CLOSED, 429: THROTTLED}, auth=[])
    def post(self, request, share_token):
        survey, data = _open_survey_input(share_token, self.Input(data=request.data))
        try:
            mailed = membership.verification_code_send(request=request, survey=survey,
                                                       email=data.validated_data["email"])
        except membership.MembershipRefused as refused:
            return _membership_refusal(refused)
        except membership.CodesThrottled as limited:
            raise CodesThrottled(wait=limited.retry_after) from limited
        if mailed is not None:
            address, code = mailed
            # Robust: a mail server that fails (in-process, on the embedded default) costs
            # the respondent a new request for a code, never a 500.
            transaction.on_commit(lambda: verification_code_mail.delay(
                address=address, code=code, title=survey.title), robust=True)
        return Response(status=status.HTTP_202_ACCEPTED)


# A TokenRequest (259 bytes) in base64url, padded or not.
TOKEN_REQUEST_PATTERN = (rf"^[A-Za-z0-9_-]{{{-(-tokens.TOKEN_REQUEST_LENGTH * 4 // 3)}}}"
                         r"(==)?$")


class TokenIssueApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    class Input(serializers.Serializer):
        invite_code = serializers.CharField(
            max_length=REPORT_CODE_MAX_LENGTH, required=False,
            help_text="On an invite-only survey: an unused invite code, used up by the token.")
        email = serializers.EmailField(max_length=membership.ADDRESS_MAX_LENGTH, required=False)
        code = serializers.RegexField(rf"^\s*\d{{{membership.CODE_DIGITS}}}\s*$",
                                      required=False)
        proof = serializers.RegexField(
            r"^[A-Za-z0-9_-]+={0,2}$", required=False,
            max_length=-(-membership.PROOF_MAX_BYTES * 4 // 3) + 2,
            help_text="Instead of email and code: base64url of a message (.eml) delivered "
                      "to your work address alone, DKIM-signed by one of the survey's "
                      "domains over its To header. Read in memory and dropped.")
        token_request = serializers.RegexField(
            TOKEN_REQUEST_PATTERN,
            help_text="base64url of a TokenRequest (RFC 9578, token type 2).")

    class Output(serializers.Serializer):
        token_response = serializers.CharField(
            help_text="base64url of the blind signature: the client finalizes it into a Token.")

    @extend_schema(
        summary=_("Buy the survey's one membership token"),
        description=_("Blind-signs the token request of an address with a valid code or a "
                      "signed message, or, on an invite-only survey, of an unused invite "
                      "code, which it uses up: the server never sees the token it signs. "
                      "One token per address or code (a second request for an address: "
                      "409). A wrong code counts against it."),
        request=Input, responses={200: Output, 409: None, 410: CLOSED}, auth=[])
    def post(self, request, share_token):
        survey, data = _open_survey_input(share_token, self.Input(data=request.data))
        values = data.validated_data
        if survey.access == Survey.Access.INVITE:
            return self.invited(request, survey=survey, values=values)
        if "proof" not in values and not {"email", "code"} <= set(values):
            return Response({name: [_("Give your email and code, or a signed message.")]
                             for name in ("email", "code") if name not in values},
                            status=status.HTTP_400_BAD_REQUEST)
        try:
            token_request = tokens.b64url_decode(values["token_request"])
            proof = tokens.b64url_decode(values["proof"]) if "proof" in values else None
        except tokens.Base64Invalid:
            return Response({"token_request" if proof is None else "proof": [
                _("This is not base64url.")]}, status=status.HTTP_400_BAD_REQUEST)
        try:
            proven = (None if proof is None else
                      membership.proof_address(request=request, survey=survey, proof=proof))
            response = membership.token_issue(
                survey=survey, email=values.get("email"), code=values.get("code"),
                token_request=token_request, proven_address=proven)
        except membership.MembershipRefused as refused:
            return _membership_refusal(refused)
        except membership.CodesThrottled as limited:
            raise CodesThrottled(wait=limited.retry_after) from limited
        return Response({"token_response": tokens.b64url_encode(response)})

    def invited(self, request, *, survey: Survey, values: dict) -> Response:
        """The token an invite code buys."""
        try:
            response = membership.token_issue_for_invite(
                request=request, survey=survey, invite_code=values.get("invite_code"),
                token_request=tokens.b64url_decode(values["token_request"]))
        except tokens.Base64Invalid:
            return Response({"token_request": [_("This is not base64url.")]},
                            status=status.HTTP_400_BAD_REQUEST)
        except membership.MembershipRefused as refused:
            return _membership_refusal(refused)
        except membership.CodesThrottled as limited:
            raise InviteCodesThrottled(wait=limited.retry_after) from limited
        return Response({"token_response": tokens.b64url_encode(response)})
