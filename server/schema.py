from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ChorusAutoSchema(AutoSchema):
    """Names nested serializers after their view (`ReportCreateApi.Input` →
    `ReportCreateApiInput`), since every view has its own `Input`/`Output`;
    says `minItems: 1` for list fields that refuse an empty list, and that
    text may hold no NUL and, when trimmed and not blank, needs a character
    other than white space: drf-spectacular leaves these out."""

    def get_serializer_name(self, serializer, direction):
        # drf-spectacular's documented hook for component names.
        return type(serializer).__qualname__.replace(".", "")

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        # The one private hook the project overrides: drf-spectacular has no public one for
        # field schemas, and its own documentation overrides this. The schema tests in
        # tests/test_schemathesis.py (minItems, text patterns) fail if it stops being called.
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (isinstance(field, serializers.ListField | serializers.ListSerializer)
                and not field.allow_empty and schema.get("type") == "array"):
            schema.setdefault("minItems", 1)
        if (direction == "request" and isinstance(field, serializers.CharField)
                and schema.get("type") == "string" and "pattern" not in schema):
            # DRF refuses NUL in any text; trimmed text that may not be blank needs
            # a character other than white space.
            schema["pattern"] = (r"^[^\x00]*[^\s\x00][^\x00]*$"
                                 if field.trim_whitespace and not field.allow_blank
                                 else r"^[^\x00]*$")
        return schema
