"""Errors as clients should see them: a status and field messages, never a
trace, in the format the client asked for."""

import logging
import sqlite3

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from server.http import no_referrer

log = logging.getLogger(__name__)

# Seconds a client is asked to wait after the database was too busy to take
# its write: about what one queued write waits on an embedded default that
# runs its tasks in-process.
BUSY_RETRY_AFTER_SECONDS = 5
BUSY_DETAIL = _("The server is too busy to store this right now, and stored nothing. "
                "Please send it again after Retry-After seconds.")
_SQLITE_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def database_busy(exc: BaseException) -> bool:
    """Whether exc is SQLite giving up on its write lock after the busy
    timeout: the write was not made, and the same request can succeed later."""
    cause = exc.__cause__
    return (isinstance(exc, OperationalError) and isinstance(cause, sqlite3.Error)
            and (getattr(cause, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_BUSY_CODES)


def wants_json(request) -> bool:
    """API paths, and any client that accepts JSON rather than HTML, are
    answered in JSON."""
    if request.path_info.startswith("/api/"):
        return True
    return request.accepts("application/json") and not request.accepts("text/html")


def busy_response(request, *, template: str = "busy.html", context: dict | None = None,
                  status_code: int = status.HTTP_503_SERVICE_UNAVAILABLE):
    """503 with Retry-After, as JSON or as a page (which may keep the answers
    the client sent, in `context`)."""
    if wants_json(request):
        response = JsonResponse({"detail": BUSY_DETAIL}, status=status_code)
    else:
        response = render(request, template, context or {}, status=status_code)
    response["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
    return response


class BusyMiddleware:
    """Answers a request whose write found the database locked past the busy
    timeout with 503 and Retry-After instead of a 500. DRF views answer the
    same through api_exception_handler."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if database_busy(exception):
            log.warning("database busy past the timeout: answered 503")
            return busy_response(request)
        return None



def api_exception_handler(exc, context):
    if database_busy(exc):
        log.warning("database busy past the timeout: answered 503")
        return Response({"detail": BUSY_DETAIL}, status=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        if set(detail) == {"detail"}:
            # A refusal not about one field reads like DRF's own: one string.
            detail = {"detail": " ".join(detail["detail"])}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        # Django would answer its own HTML 400; the client needs to know why.
        return Response({"detail": _("The request body is too large.")},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        exc.status_code = status.HTTP_401_UNAUTHORIZED
    return exception_handler(exc, context)


@no_referrer
def page_not_found(request, exception=None):
    """Django's 404 page (or a JSON 404 for API clients), sending no
    referrer: a mistyped link still carries something close to a token."""
    if wants_json(request):
        return JsonResponse({"detail": _("Not found.")}, status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)


@no_referrer
def server_error(request):
    """The 500 page, or a JSON 500 for API clients. The exception itself is
    logged by the django.request logger, without the request (server.logs)."""
    if wants_json(request):
        return JsonResponse({"detail": _("Something went wrong.")},
                            status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return defaults.server_error(request)


@no_referrer
def bad_request(request, exception=None):
    if wants_json(request):
        return JsonResponse({"detail": _("Bad request.")}, status=status.HTTP_400_BAD_REQUEST)
    return defaults.bad_request(request, exception)


_ERROR_SCHEMA = {
    "type": "object",
    "description": "`detail` for a refusal; for invalid input, one list of messages per field.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}
_ERROR_DESCRIPTIONS = {
    "400": "Invalid input: messages per field.",
    "401": "Missing or invalid credentials.",
    "403": "Refused: a session request without its CSRF token.",
    "404": "No such object, or it belongs to another organizer.",
    "410": "The survey is closed.",
    "413": "The request body is too large.",
    "415": "The body is not in a media type this operation reads.",
    "429": "Too many attempts; try again after Retry-After seconds.",
    "503": "The database was too busy to take the write, and nothing was stored; "
           "send it again after Retry-After seconds.",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds until the limit lifts.",
                                "schema": {"type": "integer"}}}
_BUSY_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before sending it again.",
                                     "schema": {"type": "integer"}}}


def document_error_responses(result, generator, request, public):
    """drf-spectacular post-processing hook: declares the error answers every
    operation can give, so clients (and the schema tests) know them.

    400 wherever input is parsed (413/415 wherever a body is), 401/403
    wherever credentials are needed, 404 wherever a path names an object.
    Views declare their own special codes (410, 413, 429) with
    `extend_schema`; this hook gives those a body too.
    """
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            codes = set()
            if "requestBody" in operation:
                codes |= {"400", "413", "415", "503"}
            if any(p["in"] == "query" for p in operation.get("parameters", [])):
                codes.add("400")
            if any(requirement for requirement in operation.get("security", [])):
                codes |= {"401", "403"}
            if any(p["in"] == "path" for p in operation.get("parameters", [])):
                codes.add("404")
            for code in codes:
                responses.setdefault(code, {"description": _ERROR_DESCRIPTIONS[code]})
            for code, response in responses.items():
                if code.startswith(("4", "503")):
                    response.setdefault("content", ref)
                    if code == "429":
                        response.setdefault("headers", _RETRY_AFTER)
                    if code == "503":
                        response.setdefault("headers", _BUSY_RETRY_AFTER)
    return result
