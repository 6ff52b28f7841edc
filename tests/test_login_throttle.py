"""Brute-force protection of the organizer login page and the token endpoint."""

import pytest
from django.core.cache import cache, caches

from server import auth
from tests.factories import PASSWORD, OrganizerFactory
from tests.recording_cache import RECORDING

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
LOGIN_URL = "/accounts/login/"
ATTEMPTS = 3


@pytest.fixture(autouse=True)
def few_attempts(settings):
    settings.CHORUS_LOGIN_ATTEMPTS = ATTEMPTS
    settings.CHORUS_LOGIN_WINDOW_SECONDS = 900
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def frozen_clock(monkeypatch):
    """A clock the test moves by hand, at the start of a window."""
    now = [1_800_000_000.0 - 1_800_000_000.0 % 900]
    monkeypatch.setattr(auth, "clock", lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds
    return advance


def token(api, username, password, address="198.51.100.7"):
    return api.post(TOKEN_URL, {"username": username, "password": password}, format="json",
                    REMOTE_ADDR=address)


def web_login(client, username, password, address="198.51.100.7"):
    return client.post(LOGIN_URL, {"username": username, "password": password},
                       REMOTE_ADDR=address)


def test_token_endpoint_answers_429_with_retry_after_once_a_username_used_its_attempts(
        api, organizer, frozen_clock):
    # Spread over addresses, so only the username's bucket fills.
    for attempt in range(ATTEMPTS):
        assert token(api, organizer.username, "wrong", f"198.51.100.{attempt}").status_code == 401
    refused = token(api, organizer.username, PASSWORD, "203.0.113.50")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 900
    assert "token" not in refused.json()


def test_locked_username_gets_in_with_the_right_password_only_after_the_window(
        api, organizer, frozen_clock):
    for _ in range(ATTEMPTS):
        token(api, organizer.username, "wrong")
    frozen_clock(600)
    refused = token(api, organizer.username, PASSWORD)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 300
    frozen_clock(300)
    assert token(api, organizer.username, PASSWORD).status_code == 200


def test_lockout_does_not_reveal_whether_the_username_exists(api, organizer, frozen_clock):
    answers = {}
    for username in (organizer.username, "nobody-by-this-name"):
        wrong = [token(api, username, "wrong", f"198.51.100.{i}") for i in range(ATTEMPTS)]
        locked = token(api, username, "wrong", "198.51.100.99")
        answers[username] = ([(r.status_code, r.json()) for r in wrong],
                             (locked.status_code, locked.json(), locked["Retry-After"]))
    assert answers[organizer.username] == answers["nobody-by-this-name"]
    assert answers[organizer.username][1][0] == 429


def test_one_client_guessing_many_usernames_is_locked_out(api, frozen_clock):
    victim = OrganizerFactory()
    for attempt in range(ATTEMPTS):
        assert token(api, f"guess{attempt}", "wrong", "198.51.100.7").status_code == 401
    assert token(api, victim.username, PASSWORD, "198.51.100.7").status_code == 429
    assert token(api, victim.username, PASSWORD, "198.51.100.8").status_code == 200


def test_client_bucket_follows_the_trusted_proxy_header(api, settings, frozen_clock):
    settings.CHORUS_CLIENT_IP_HEADER = "X-Forwarded-For"
    victim = OrganizerFactory()
    for attempt in range(ATTEMPTS):
        # The left entries are the client's own claim and change every time.
        api.post(TOKEN_URL, {"username": f"guess{attempt}", "password": "wrong"}, format="json",
                 HTTP_X_FORWARDED_FOR=f"10.0.0.{attempt}, 198.51.100.7")
    refused = api.post(TOKEN_URL, {"username": victim.username, "password": PASSWORD},
                       format="json", HTTP_X_FORWARDED_FOR="10.9.9.9, 198.51.100.7")
    assert refused.status_code == 429


def test_a_successful_login_does_not_reset_other_users_buckets(api, frozen_clock):
    locked, other = OrganizerFactory(), OrganizerFactory()
    for attempt in range(ATTEMPTS):
        token(api, locked.username, "wrong", f"198.51.100.{attempt}")
    assert token(api, other.username, PASSWORD, "203.0.113.1").status_code == 200
    assert token(api, locked.username, PASSWORD, "203.0.113.2").status_code == 429


def test_a_successful_login_clears_only_its_own_username(api, frozen_clock):
    organizer = OrganizerFactory()
    for attempt in range(ATTEMPTS - 1):
        token(api, organizer.username, "wrong", f"198.51.100.{attempt}")
    assert token(api, organizer.username, PASSWORD, "203.0.113.1").status_code == 200
    for attempt in range(ATTEMPTS - 1):
        assert token(api, organizer.username, "wrong",
                     f"198.51.100.{attempt + 10}").status_code == 401
    assert token(api, organizer.username, PASSWORD, "203.0.113.1").status_code == 200


def test_case_variants_of_a_username_share_its_bucket(api, organizer, frozen_clock):
    for attempt in range(ATTEMPTS):
        token(api, organizer.username.upper() if attempt % 2 else organizer.username, "wrong",
              f"198.51.100.{attempt}")
    assert token(api, organizer.username, PASSWORD, "203.0.113.1").status_code == 429


def test_the_cache_holds_neither_the_username_nor_the_address(api, organizer, frozen_clock,
                                                               settings):
    settings.CACHES = RECORDING
    token(api, organizer.username, "wrong", "198.51.100.77")
    keys = caches["default"].written
    assert keys
    assert not [key for key in keys if organizer.username in key or "198.51.100.77" in key]


def test_web_login_shows_a_form_error_and_refuses_the_right_password_when_locked(
        client, organizer, frozen_clock):
    for attempt in range(ATTEMPTS):
        wrong = web_login(client, organizer.username, "wrong", f"198.51.100.{attempt}")
        assert wrong.status_code == 200
        assert "Too many failed logins" not in wrong.text
    refused = web_login(client, organizer.username, PASSWORD, "203.0.113.9")
    assert refused.status_code == 200
    assert "Too many failed logins. Please try again in 15 minutes." in refused.text
    assert "_auth_user_id" not in client.session
    assert client.get("/organizer/").status_code == 302
    frozen_clock(900)
    assert web_login(client, organizer.username, PASSWORD).status_code == 302
    assert client.get("/organizer/").status_code == 200


def test_web_and_api_failures_count_against_the_same_buckets(api, client, organizer,
                                                             frozen_clock):
    web_login(client, organizer.username, "wrong", "198.51.100.1")
    token(api, organizer.username, "wrong", "198.51.100.2")
    web_login(client, organizer.username, "wrong", "198.51.100.3")
    assert token(api, organizer.username, PASSWORD, "198.51.100.4").status_code == 429


def test_zero_turns_the_limit_off(api, organizer, settings, frozen_clock):
    settings.CHORUS_LOGIN_ATTEMPTS = 0
    for _ in range(ATTEMPTS + 2):
        assert token(api, organizer.username, "wrong").status_code == 401
    assert token(api, organizer.username, PASSWORD).status_code == 200
