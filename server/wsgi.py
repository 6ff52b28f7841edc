"""The WSGI application: Django's, with a shorter middleware stack for the
one request that is most of the traffic, a respondent filing a report.

Sessions, CSRF (the view is exempt), authentication (the view has none),
messages and static files do nothing for `POST /api/v1/s/<token>/reports/`
but cost as much CPU per request as a trivial view. That request goes
through the same stack without them: every header the endpoint sends
(security, referrer, framing, content policy, length) still comes from the
same middleware, in the same order, and errors are answered as elsewhere.
"""

import os
import re

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.urls import ResolverMatch

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")

# Middleware that has nothing to do for the intake request. Anything not
# listed here, including middleware added later, runs for it as for the rest.
NOT_FOR_INTAKE = frozenset({
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
})
INTAKE_URL_NAME = "api-report-create"


class IntakeHandler(WSGIHandler):
    """WSGIHandler with the settings' middleware less NOT_FOR_INTAKE, that
    also knows where its paths go: `route` is the match of a sample intake
    path and `pattern` matches the paths it stands for, capturing the token."""

    def __init__(self, *, route=None, pattern: re.Pattern | None = None):
        super().__init__()
        self.route, self.pattern = route, pattern

    def resolve_request(self, request):
        # The resolver tries each pattern in turn and builds the match from
        # the route's converters, for a path that intake_path_pattern has
        # already matched to this route. The same match, made directly.
        found = self.pattern.match(request.path_info) if self.pattern else None
        if found is None:
            return super().resolve_request(request)
        route, kwargs = self.route, {"share_token": found[1]}
        match = ResolverMatch(route.func, (), kwargs, route.url_name, route.app_names,
                              route.namespaces, route.route, captured_kwargs=kwargs,
                              extra_kwargs={})
        request.resolver_match = match
        return match

    def load_middleware(self, is_async=False):
        from django.conf import settings

        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in full if path not in NOT_FOR_INTAKE]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def intake_route():
    """The URLconf's match for a sample intake path, and a pattern of the
    paths it routes there (capturing the token); None if the sample no
    longer resolves to the intake view, or to a view exempt from CSRF (the
    short stack is then never used: it must not serve a view that needs the
    middleware it leaves out)."""
    from django.urls import Resolver404, resolve, reverse

    token = "TOKEN"  # noqa: S105 - a placeholder, not a secret
    try:
        sample = reverse(INTAKE_URL_NAME, args=[token])
        match = resolve(sample)
    except Resolver404:
        return None
    if (match.url_name != INTAKE_URL_NAME or match.kwargs != {"share_token": token}
            or match.args or not getattr(match.func, "csrf_exempt", False)):
        return None
    # A share token is one path segment (the route's str converter).
    prefix, _token, suffix = sample.partition(token)
    return match, re.compile(re.escape(prefix) + "([^/]+)" + re.escape(suffix) + r"\Z")


def intake_path_pattern() -> re.Pattern | None:
    route = intake_route()
    return route and route[1]


def make_application(full=None, intake=None):
    full = full or get_wsgi_application()
    route = intake_route()
    if route is None:
        return full
    sample_match, pattern = route
    intake = intake or IntakeHandler(route=sample_match, pattern=pattern)
    match = pattern.match

    def application(environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST" and match(environ.get("PATH_INFO", "")):
            return intake(environ, start_response)
        return full(environ, start_response)

    return application


application = make_application()
