from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ChorusAutoSchema(AutoSchema):
    """Names nested serializers after their view (`ReportCreateApi.Input` →
    `ReportCreateApiInput`), since every view has its own `Input`/`Output`;
    says `minItems: 1` for list fields that refuse an empty list, and, for
    text that is trimmed and may not be blank, that it needs a character
    other than white space: drf-spectacular leaves both out."""

    def _get_serializer_name(self, serializer, direction, bypass_extensions=False):
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        qualname = type(serializer).__qualname__
        if "." in qualname and name.startswith(type(serializer).__name__):
            name = qualname.replace(".", "") + name[len(type(serializer).__name__):]
        return name

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (isinstance(field, serializers.ListField | serializers.ListSerializer)
                and not field.allow_empty and schema.get("type") == "array"):
            schema.setdefault("minItems", 1)
        if (direction == "request" and isinstance(field, serializers.CharField)
                and field.trim_whitespace and not field.allow_blank
                and schema.get("type") == "string" and "pattern" not in schema):
            schema["pattern"] = r"\S"
        return schema
