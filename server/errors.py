"""Errors as clients should see them: a status and field messages, never a trace."""

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from server.http import no_referrer


def api_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        if set(detail) == {"detail"}:
            # A refusal not about one field reads like DRF's own: one string.
            detail = {"detail": " ".join(detail["detail"])}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        # Django would answer its own HTML 400; the client needs to know why.
        return Response({"detail": "The request body is too large."},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        exc.status_code = status.HTTP_401_UNAUTHORIZED
    return exception_handler(exc, context)


@no_referrer
def page_not_found(request, exception=None):
    """Django's 404 page, sending no referrer: a mistyped link still carries
    something close to a token."""
    return defaults.page_not_found(request, exception)


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
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds until the limit lifts.",
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
                codes |= {"400", "413", "415"}
            if any(p["in"] == "query" for p in operation.get("parameters", [])):
                codes.add("400")
            if any(requirement for requirement in operation.get("security", [])):
                codes |= {"401", "403"}
            if any(p["in"] == "path" for p in operation.get("parameters", [])):
                codes.add("404")
            for code in codes:
                responses.setdefault(code, {"description": _ERROR_DESCRIPTIONS[code]})
            for code, response in responses.items():
                if code.startswith("4"):
                    response.setdefault("content", ref)
                    if code == "429":
                        response.setdefault("headers", _RETRY_AFTER)
    return result
