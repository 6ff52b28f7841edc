"""Single-row reads and inserts for hot paths.

The ORM builds and compiles its query on every call (Model.objects.create(),
filter().first()), which costs several times the CPU of the round trip on
the report intake path. These send the same statements, with values prepared
and converted by the model's own fields, so rows are stored and read back
exactly as the ORM would store and read them.
"""

from functools import cache

from django.db import connection, models, transaction
from django.db.models.fields import AutoFieldMixin


def _cursor():
    """On PostgreSQL, a cursor that sends parameters apart from the statement,
    as the protocol allows: Django's own cursors splice them into the SQL in
    Python first (psycopg's client-side binding), which cost as much CPU as
    the rest of the round trip for these short statements. Still a Django
    cursor: errors, query logging and execute wrappers are the ORM's."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    connection.validate_thread_sharing()
    cursor = ServerBindingCursor(connection.connection)
    return (connection.make_debug_cursor(cursor) if connection.queries_logged
            else connection.make_cursor(cursor))


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
    with _cursor() as cursor:
        cursor.execute(sql, params)


@cache
def _select(model: type[models.Model], column_field: str) -> tuple[str, list, list]:
    fields = list(model._meta.concrete_fields)
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    sql = (f"SELECT {', '.join(f'{table}.{quote(field.column)}' for field in fields)} "  # noqa: S608
           f"FROM {table} WHERE {table}.{quote(model._meta.get_field(column_field).column)} = %s")
    columns = [field.get_col(model._meta.db_table) for field in fields]
    converters = [(column, connection.ops.get_db_converters(column)
                   + column.get_db_converters(connection)) for column in columns]
    return sql, [field.attname for field in fields], converters


def get_by_unique(model: type[models.Model], field: str, value):
    """The instance whose unique `field` equals `value`, or None: what
    model.objects.filter(**{field: value}).first() returns, as the ORM would
    build it (from_db), without building the query each time."""
    sql, names, converters = _select(model, field)
    with _cursor() as cursor:
        cursor.execute(sql, [model._meta.get_field(field).get_db_prep_value(value, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for raw, (column, column_converters) in zip(row, converters, strict=True):
        for converter in column_converters:
            raw = converter(raw, column, connection)
        values.append(raw)
    return model.from_db(connection.alias, names, values)
