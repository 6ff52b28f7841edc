"""Single-row inserts for hot paths.

Model.objects.create() builds and compiles its query on every call, which
costs several times the CPU of the round trip on the report intake path.
This sends the same INSERT, with values prepared by the model's own fields
and defaults, so rows are stored exactly as the ORM would store them.
"""

from functools import cache

from django.db import connection, models
from django.db.models.fields import AutoFieldMixin


@cache
def _statement(model: type[models.Model]) -> tuple[str, list]:
    fields = [field for field in model._meta.concrete_fields
              if not isinstance(field, AutoFieldMixin)]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608 - names from the model
           f"({', '.join(quote(field.column) for field in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    return sql, fields


def insert_row(model: type[models.Model], **values) -> None:
    """INSERTs one row: `values` by attname (unit_id, not unit); other
    fields take their defaults. No signals are sent and save() is not run."""
    sql, fields = _statement(model)
    params = [field.get_db_prep_save(values.pop(field.attname) if field.attname in values
                                     else field.get_default(), connection)
              for field in fields]
    if values:
        raise TypeError(f"{model.__name__} has no fields {sorted(values)}")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
