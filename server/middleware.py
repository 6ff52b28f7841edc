"""Middleware that stands aside for the one request that is most of the traffic, a
respondent filing a report.

Static files, sessions, authentication (the view has none) and messages do nothing for
`POST /api/v1/s/<token>/reports/` but cost as much CPU per request as a trivial view. Each
is listed in settings.MIDDLEWARE through one of the classes below: for that request it
hands the request straight on, for every other request it is the middleware itself. Every
header intake answers with (security, referrer, framing, content policy, length) still
comes from the middleware that sends it elsewhere, in the same order. CSRF is listed as
itself (the deploy check looks for it by name); for the exempt intake view it does little.

Built on Django's documented middleware protocol alone (a callable made with
`get_response`, and the `process_view` hook): the handler and the settings are Django's own
and are never changed at run time.
"""

from __future__ import annotations

import re

from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils.module_loading import import_string

INTAKE_URL_NAME = "api-report-create"


def intake_paths() -> re.Pattern | None:
    """The paths the URLconf routes to the intake view (capturing the share token), or None
    if that view is gone or needs CSRF protection: then nothing stands aside, since no
    middleware may be left out for a view that needs it."""
    token = "TOKEN"  # noqa: S105 - a placeholder, not a secret
    try:
        sample = reverse(INTAKE_URL_NAME, args=[token])
        match = resolve(sample)
    except (NoReverseMatch, Resolver404):
        return None
    if (match.url_name != INTAKE_URL_NAME or match.kwargs != {"share_token": token}
            or match.args or not getattr(match.func, "csrf_exempt", False)):
        return None
    # A share token is one path segment (the route's str converter).
    prefix, _token, suffix = sample.partition(token)
    return re.compile(re.escape(prefix) + "([^/]+)" + re.escape(suffix))


class NotForIntake:
    """The middleware named by `wrapped`, except for a report being filed."""

    wrapped: str

    def __init__(self, get_response):
        self.get_response = get_response
        self.middleware = import_string(self.wrapped)(get_response)
        paths = intake_paths()
        self.is_intake_path = paths.fullmatch if paths is not None else (lambda _path: None)
        # The handler collects hooks by looking for them: offer only the middleware's own.
        if hasattr(self.middleware, "process_view"):
            self.process_view = self.middleware.process_view

    def __call__(self, request):
        if request.method == "POST" and self.is_intake_path(request.path_info):
            return self.get_response(request)
        return self.middleware(request)


class StaticFiles(NotForIntake):
    wrapped = "whitenoise.middleware.WhiteNoiseMiddleware"


class Sessions(NotForIntake):
    wrapped = "django.contrib.sessions.middleware.SessionMiddleware"


class Authentication(NotForIntake):
    wrapped = "django.contrib.auth.middleware.AuthenticationMiddleware"


class Messages(NotForIntake):
    wrapped = "django.contrib.messages.middleware.MessageMiddleware"
