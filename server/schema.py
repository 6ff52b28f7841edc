from drf_spectacular.openapi import AutoSchema


class ChorusAutoSchema(AutoSchema):
    """Names nested serializers after their view (`ReportCreateApi.Input` →
    `ReportCreateApiInput`), since every view has its own `Input`/`Output`."""

    def _get_serializer_name(self, serializer, direction, bypass_extensions=False):
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        qualname = type(serializer).__qualname__
        if "." in qualname and name.startswith(type(serializer).__name__):
            name = qualname.replace(".", "") + name[len(type(serializer).__name__):]
        return name
