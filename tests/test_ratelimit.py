import datetime as dt
import re

import pytest
from django.apps import apps
from django.core.cache import caches
from django.db import connection
from django.test import RequestFactory
from redis import Redis

from server import kept_redis
from surveys import ratelimit
from tests.conftest import redis_reachable, redis_url, require
from tests.factories import file_reports, report_payload, stored_count

pytestmark = pytest.mark.django_db


def share_path(survey) -> str:
    return f"/api/v1/s/{survey.share_token}/reports/"


def post(api, survey, address="198.51.100.1", **headers):
    return api.post(share_path(survey), report_payload(), format="json", REMOTE_ADDR=address,
                    **headers)


def form_data() -> dict:
    return {"unit": "Acme/Retail/Marketing", "period": "2026-01-01",
            "signals": ["abrupt_reversal"]}


@pytest.fixture
def limit(settings):
    def set_limit(value: int) -> None:
        settings.CHORUS_SUBMISSIONS_PER_DAY = value
    return set_limit


def test_the_report_over_the_daily_limit_answers_429_with_retry_after(api, survey, limit):
    limit(5)
    assert [post(api, survey).status_code for _ in range(5)] == [201] * 5
    refused = post(api, survey)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 24 * 60 * 60
    assert "try again tomorrow" in refused.json()["detail"]
    assert stored_count(survey) == 5


def test_the_form_over_the_limit_answers_429_with_a_human_page(client, survey, limit):
    limit(1)
    url = f"/s/{survey.share_token}/"
    assert client.post(url, form_data()).status_code == 201
    refused = client.post(url, form_data())
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 24 * 60 * 60
    assert "try again tomorrow" in refused.text
    assert stored_count(survey) == 1


def test_the_sixth_form_from_one_office_address_keeps_the_typed_answers_on_the_page(
        client, survey, limit):
    limit(5)
    url = f"/s/{survey.share_token}/"
    office = {"REMOTE_ADDR": "203.0.113.50"}
    for _ in range(5):
        assert client.post(url, form_data(), **office).status_code == 201
    token = client.get(url).context["submission_token"]
    typed = {**form_data(), "signals": ["coaching_plan", "exit_pressure"],
             "comment": "My recap listed problems nobody raised", "submission_token": token}
    refused = client.post(url, typed, **office)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 24 * 60 * 60
    page = refused.content.decode()
    assert "too many reports for this survey came from your network today" in page
    assert "share an office connection or a VPN" in page
    assert "My recap listed problems nobody raised" in page
    for code in ("coaching_plan", "exit_pressure"):
        assert re.search(f'value="{code}"[^>]*checked', page)
    assert f'value="{token}"' in page
    # Sent from another connection, the same page files it.
    assert client.post(url, typed, REMOTE_ADDR="198.51.100.9").status_code == 201
    assert stored_count(survey) == 6


def test_the_limit_is_per_survey(api, organizer, survey, limit):
    from tests.factories import survey_with_units
    limit(1)
    other = survey_with_units(owner=organizer, paths=["Acme/Retail/Marketing"])
    assert post(api, survey).status_code == 201
    assert post(api, survey).status_code == 429
    assert post(api, other).status_code == 201


def test_different_addresses_are_counted_apart(api, survey, limit):
    limit(1)
    assert post(api, survey, "198.51.100.1").status_code == 201
    assert post(api, survey, "198.51.100.1").status_code == 429
    assert post(api, survey, "198.51.100.2").status_code == 201


def test_a_spoofed_leftmost_forwarded_for_does_not_evade_the_limit(api, survey, limit,
                                                                   settings):
    limit(1)
    settings.CHORUS_CLIENT_IP_HEADER = "X-Forwarded-For"
    first = post(api, survey, "10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.9")
    assert first.status_code == 201
    spoofed = post(api, survey, "10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.99, 203.0.113.9")
    assert spoofed.status_code == 429
    other_client = post(api, survey, "10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.10")
    assert other_client.status_code == 201


def test_a_trusted_real_ip_header_tells_clients_behind_one_proxy_apart(api, survey, limit,
                                                                        settings):
    limit(1)
    settings.CHORUS_CLIENT_IP_HEADER = "X-Real-IP"
    assert post(api, survey, "10.0.0.2", HTTP_X_REAL_IP="203.0.113.9").status_code == 201
    assert post(api, survey, "10.0.0.2", HTTP_X_REAL_IP="203.0.113.9").status_code == 429
    assert post(api, survey, "10.0.0.2", HTTP_X_REAL_IP="203.0.113.10").status_code == 201


def test_untrusted_forwarding_headers_are_ignored(api, survey, limit):
    limit(1)
    assert post(api, survey, HTTP_X_FORWARDED_FOR="192.0.2.1").status_code == 201
    assert post(api, survey, HTTP_X_FORWARDED_FOR="192.0.2.2",
                HTTP_X_REAL_IP="192.0.2.3").status_code == 429


def test_zero_turns_the_limit_off(api, survey, limit):
    limit(0)
    assert [post(api, survey).status_code for _ in range(8)] == [201] * 8


def test_rejected_reports_do_not_count_against_the_limit(api, survey, limit):
    limit(1)
    for _ in range(3):
        bad = api.post(share_path(survey), report_payload(unit="Acme/Nowhere"), format="json")
        assert bad.status_code == 400
    assert post(api, survey, "127.0.0.1").status_code == 201


def test_receipt_look_ups_have_their_own_bucket_on_api_and_page(api, client, survey, limit):
    limit(2)
    [receipt] = file_reports(survey, 1)
    assert api.delete(f"{share_path(survey)}wrong-1/").status_code == 404
    assert client.post(f"/s/{survey.share_token}/withdraw/",
                       {"receipt": "wrong-2"}).status_code == 404
    refused = api.delete(f"{share_path(survey)}{receipt}/")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 24 * 60 * 60
    page = client.post(f"/s/{survey.share_token}/withdraw/", {"receipt": receipt})
    assert page.status_code == 429
    assert "try again tomorrow" in page.text
    assert stored_count(survey) == 1
    # Submissions count in a bucket of their own.
    assert post(api, survey, "127.0.0.1").status_code == 201


def test_the_salt_rotates_each_day(survey, limit):
    limit(1)
    monday, tuesday = dt.date(2026, 3, 2), dt.date(2026, 3, 3)
    key = {"address": "198.51.100.1", "survey_id": survey.id, "scope": ratelimit.SUBMIT}
    assert ratelimit.bucket_key(**key, day=monday) == ratelimit.bucket_key(**key, day=monday)
    monday_digest = ratelimit.bucket_key(**key, day=monday).rsplit(":", 1)[1]
    tuesday_digest = ratelimit.bucket_key(**key, day=tuesday).rsplit(":", 1)[1]
    assert monday_digest != tuesday_digest
    request = RequestFactory().post("/", REMOTE_ADDR="198.51.100.1")
    assert ratelimit.hit(request=request, survey_id=survey.id, scope=ratelimit.SUBMIT,
                         day=monday).allowed
    assert not ratelimit.hit(request=request, survey_id=survey.id, scope=ratelimit.SUBMIT,
                             day=monday).allowed
    assert ratelimit.hit(request=request, survey_id=survey.id, scope=ratelimit.SUBMIT,
                         day=tuesday).allowed


def database_text() -> str:
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            chunks.extend(" ".join(str(value) for value in row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_nothing_about_the_address_reaches_the_database(api, client, survey, limit, settings):
    limit(2)
    settings.CHORUS_CLIENT_IP_HEADER = "X-Forwarded-For"
    forwarded = {"HTTP_X_FORWARDED_FOR": "192.0.2.77, 203.0.113.77"}
    for _ in range(3):
        post(api, survey, "203.0.113.250", **forwarded)
        client.post(f"/s/{survey.share_token}/", form_data(), REMOTE_ADDR="203.0.113.250",
                    **forwarded)
        api.delete(f"{share_path(survey)}nope/", REMOTE_ADDR="203.0.113.250", **forwarded)
    assert stored_count(survey) == 2
    stored = database_text()
    assert str(survey.id).replace("-", "") in stored.replace("-", "")
    for leak in ("203.0.113", "192.0.2."):
        assert leak not in stored
    today = ratelimit._today()
    for scope in (ratelimit.SUBMIT, ratelimit.RECEIPT):
        digest = ratelimit.bucket_key(address="203.0.113.77", survey_id=survey.id, scope=scope,
                                      day=today).rsplit(":", 1)[1]
        assert digest not in stored
    assert {model._meta.db_table for model in apps.get_models()} <= set(
        connection.introspection.table_names())


@pytest.mark.services
def test_redis_holds_only_hashed_buckets_that_expire_within_a_day(api, survey, limit, settings):
    url = redis_url()
    require(redis_reachable(url), f"needs Redis at {url}")
    limit(1)
    prefix = f"chorus-test-{survey.id}"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": url, "KEY_PREFIX": prefix}}
    assert post(api, survey, "203.0.113.77").status_code == 201
    assert post(api, survey, "203.0.113.77").status_code == 429
    assert post(api, survey, "203.0.113.78").status_code == 201
    redis = Redis.from_url(url)
    keys = redis.keys(f"{prefix}:*")
    try:
        assert len(keys) == 3  # the salt of the day and two buckets
        for key in keys:
            assert b"203.0.113" not in key
            assert 0 < redis.ttl(key) <= 24 * 60 * 60
    finally:
        redis.delete(*keys)


@pytest.mark.services
def test_the_count_goes_on_after_redis_drops_its_scripts_and_connections(api, survey, limit,
                                                                        settings):
    url = redis_url()
    require(redis_reachable(url), f"needs Redis at {url}")
    limit(3)
    prefix = f"chorus-test-{survey.id}"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": url, "KEY_PREFIX": prefix}}
    redis = Redis.from_url(url)
    try:
        assert post(api, survey).status_code == 201
        redis.script_flush()
        assert post(api, survey).status_code == 201
        # As a restart or an idle timeout would: the connection that counts is closed.
        _backend, kept = kept_redis.for_cache()
        assert redis.client_kill_filter(_id=kept.command("CLIENT", "ID")) == 1
        assert post(api, survey).status_code == 201
        assert post(api, survey).status_code == 429
    finally:
        keys = redis.keys(f"{prefix}:*")
        if keys:
            redis.delete(*keys)


@pytest.mark.services
def test_a_mark_added_in_one_command_is_the_cache_s_own_value(settings):
    url = redis_url()
    require(redis_reachable(url), f"needs Redis at {url}")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": url, "KEY_PREFIX": "chorus-test-add"}}
    cache = caches["default"]
    try:
        assert kept_redis.add_int("mark", 1, timeout=30) is True
        assert kept_redis.add_int("mark", 2, timeout=30) is False
        assert cache.get("mark") == 1
        assert 0 < Redis.from_url(url).ttl(cache.make_key("mark")) <= 30
        cache.delete("mark")
        assert kept_redis.add_int("mark", 3, timeout=30) is True
    finally:
        cache.delete("mark")


def test_without_redis_a_mark_is_added_through_the_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "chorus-test-mark"}}
    assert kept_redis.for_cache() is None
    assert kept_redis.add_int("mark", 1, timeout=30) is True
    assert kept_redis.add_int("mark", 1, timeout=30) is False
