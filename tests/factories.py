import datetime as dt

import factory
from django.contrib.auth import get_user_model

from surveys import intake, services

PASSWORD = "a-long-test-password"


class OrganizerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"organizer{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(self, create, extracted, **kwargs):
        if create:
            self.save()


def survey_with_units(*, owner, paths: list[str], min_group_size: int = 3, period: str = "month",
                      title: str = "Feedback changes"):
    survey = services.survey_create(owner=owner, title=title, period=period,
                                    min_group_size=min_group_size)
    services.units_upsert(survey=survey, units=[{"path": path} for path in paths])
    return survey


def report_payload(**overrides) -> dict:
    payload = {"unit": "Acme/Retail/Marketing", "period": "2026-01-14",
               "signals": ["prior_positive_standing", "abrupt_reversal"]}
    payload.update(overrides)
    return payload


def file_reports(survey, count: int, *, unit: str = "Acme/Retail/Marketing",
                 period: dt.date = dt.date(2026, 1, 14), signals=("abrupt_reversal",)) -> list:
    return [intake.report_create(survey=survey, draft=services.ReportDraft(
        unit=unit, period=period, signals=tuple(signals))) for _ in range(count)]


def publish(survey) -> None:
    """Publishes whatever the survey holds, as a publication does: held
    reports reach Report and the counted figures only this way."""
    from reports.services import publication_maybe_publish

    publication_maybe_publish(survey_id=survey.id, force=True)


def stored_count(survey=None) -> int:
    """Reports stored, whether held for the next publication or published."""
    from surveys.models import HeldReport, Report

    held = HeldReport.objects.filter(kind=HeldReport.Kind.NEW)
    reports = Report.objects.all()
    if survey is not None:
        held, reports = held.filter(survey=survey), reports.filter(survey=survey)
    return held.count() + reports.count()


def invite_token_request(api, survey, code: str, *, token_request: bytes | None = None):
    """POSTs an invite code with a blinded token request, as the form's browser side does;
    returns the response and what finalizes its answer into a token."""
    from surveys import tokens
    from tests import privacypass_client

    body = api.get(f"/api/v1/s/{survey.share_token}/token-key/").json()
    public_key = tokens.load_token_key(tokens.b64url_decode(body["token_key"]))
    request, pending = privacypass_client.token_request(
        public_key, tokens.b64url_decode(body["challenge"]))
    response = api.post(f"/api/v1/s/{survey.share_token}/tokens/", {
        "invite_code": code, "token_request": tokens.b64url_encode(token_request or request)},
        format="json")

    def finalize() -> str:
        return tokens.b64url_encode(privacypass_client.finalize_token(
            public_key, pending, tokens.b64url_decode(response.json()["token_response"])))

    return response, finalize


def invite_token(api, survey, code: str) -> str:
    """The membership token (base64url) an invite code buys: the code is used up."""
    response, finalize = invite_token_request(api, survey, code)
    assert response.status_code == 200, response.json()
    return finalize()
