"""Single-row inserts for hot paths.

Model.objects.create() builds and compiles its query on every call, which
costs several times the CPU of the round trip on the report intake path.
This sends the same INSERT, with values prepared by the model's own fields
and defaults, so rows are stored exactly as the ORM would store them.
"""

from functools import cache

from django.db import connection, models, transaction
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


def _params(model: type[models.Model], values: dict) -> tuple[str, list]:
    sql, fields = _statement(model)
    values = dict(values)
    params = [field.get_db_prep_save(values.pop(field.attname) if field.attname in values
                                     else field.get_default(), connection)
              for field in fields]
    if values:
        raise TypeError(f"{model.__name__} has no fields {sorted(values)}")
    return sql, params


def insert_rows(rows: list[tuple[type[models.Model], dict]]) -> None:
    """INSERTs rows, all or none: `values` by attname (unit_id, not unit);
    other fields take their defaults; no signals, no save(). On PostgreSQL they go
    in one statement, which needs no transaction of its own: outside one it
    commits by itself, in a single round trip, where BEGIN, the INSERTs and
    COMMIT would take one each."""
    statements = [_params(model, values) for model, values in rows]
    if len(statements) > 1 and connection.vendor != "postgresql":
        with transaction.atomic():
            for sql, params in statements:
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
        return
    *first, (sql, params) = statements
    if first:
        sql = "WITH " + ", ".join(f"w{index} AS ({statement})" for index, (statement, _p)
                                  in enumerate(first)) + " " + sql
        params = [param for _sql, first_params in first for param in first_params] + params
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
