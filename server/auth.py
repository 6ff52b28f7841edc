"""Organizer login with brute-force protection, shared by the login page and
the token endpoint.

Failed attempts are counted in the cache in two buckets, one per username and
one per client, over fixed windows of CHORUS_LOGIN_WINDOW_SECONDS. Once either
bucket holds CHORUS_LOGIN_ATTEMPTS failures, every attempt in that window is
refused before the password is checked, so a locked-out username cannot get in
even with the right password, and guessing cannot tell a locked account from an
unknown one: unknown usernames are counted and refused the same way.

Like surveys.ratelimit, a bucket is named by an HMAC under a random salt that
lives only in the cache and expires with its window: neither the client
address nor the username is stored, and old bucket names cannot be recomputed.
"""

import hashlib
import hmac
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from redis.exceptions import RedisError

from surveys import ratelimit

_PREFIX = "chorus:login"
USERNAME = "username"
CLIENT = "client"

# Tests move this to simulate the window passing.
clock = time.time


class LoginLocked(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"too many failed logins; retry after {retry_after}s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Window:
    index: int
    seconds_left: int


def _window() -> _Window:
    length = settings.CHORUS_LOGIN_WINDOW_SECONDS
    now = clock()
    index = int(now // length)
    return _Window(index=index, seconds_left=max(1, int((index + 1) * length - now)))


def _keys(*, request, username: str, window: _Window) -> list[str]:
    salt = ratelimit.salt_read(f"{_PREFIX}:windowsalt:{window.index}",
                               timeout=window.seconds_left)
    keyed = hmac.new(salt, digestmod=hashlib.sha256)
    # Case-folded: on a case-sensitive user table this locks more, never less.
    values = {USERNAME: username.casefold(), CLIENT: ratelimit.client_address(request)}
    return [f"{_PREFIX}:{kind}:{window.index}:"
            + ratelimit.bucket_digest(keyed, f"{kind}|{value}")
            for kind, value in values.items()]


def _locked(keys: list[str]) -> bool:
    counts = cache.get_many(keys)
    return any(int(count) >= settings.CHORUS_LOGIN_ATTEMPTS for count in counts.values())


def _count_failure(keys: list[str], window: _Window) -> None:
    for key in keys:
        ratelimit.count_up(key, timeout=window.seconds_left)


def login_authenticate(*, request, username: str, password: str):
    """The user these credentials name, or None; raises LoginLocked while the
    username or the client has used up the window's failed attempts."""
    if settings.CHORUS_LOGIN_ATTEMPTS <= 0:
        return authenticate(request, username=username, password=password)
    window = _window()
    try:
        keys = _keys(request=request, username=username, window=window)
        if _locked(keys):
            raise LoginLocked(window.seconds_left)
    except RedisError:
        # With the cache down, organizers can still log in (passwords are
        # still checked); refusing everyone would be the worse outage.
        keys = []
    user = authenticate(request, username=username, password=password)
    try:
        if user is None and keys:
            _count_failure(keys, window)
        elif user is not None and keys:
            # Only this username's count: the client's stays, or one valid
            # account would let its holder keep guessing at the others.
            cache.delete(keys[0])
    except RedisError:
        pass
    return user


class ThrottledAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "locked": _("Too many failed logins. Please try again in %(minutes)d minutes."),
    }

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            try:
                self.user_cache = login_authenticate(request=self.request, username=username,
                                                     password=password)
            except LoginLocked as locked:
                raise ValidationError(self.error_messages["locked"], code="locked",
                                      params={"minutes": -(-locked.retry_after // 60)}
                                      ) from locked
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class LoginView(auth_views.LoginView):
    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True
