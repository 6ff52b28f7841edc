"""Single-row reads and inserts for hot paths.

The ORM builds and compiles its query on every call (Model.objects.create(),
filter().first()), which costs several times the CPU of the round trip on
the report intake path. These send the same statements, with values prepared
and converted by the model's own fields, so rows are stored and read back
exactly as the ORM would store and read them.
"""

import functools
import threading
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.models.fields import AutoFieldMixin


def _db():
    # The thread's wrapper itself: each attribute read through the
    # django.db.connection proxy looks the thread's wrapper up again.
    return connections[DEFAULT_DB_ALIAS]


# The psycopg cursor each thread keeps with its connection, as (connection, cursor).
_kept = threading.local()


def _cursor(db):
    """On PostgreSQL, a cursor that sends parameters apart from the statement,
    as the protocol allows: Django's own cursors splice them into the SQL in
    Python first (psycopg's client-side binding), which cost as much CPU as
    the rest of the round trip for these short statements. Still a Django
    cursor: errors, query logging and execute wrappers are the ORM's.

    The psycopg cursor (psycopg.Cursor: binding on the server) is kept by the
    thread with its connection and used again: making one costs more than these
    statements' own Python work. Callers must call _done(), not close() it."""
    if db.vendor != "postgresql":
        return db.cursor()
    db.ensure_connection()
    db.validate_thread_sharing()
    raw = db.connection
    kept = getattr(_kept, "cursor", None)
    if kept is None or kept[0] is not raw or kept[1].closed:
        import psycopg

        kept = _kept.cursor = (raw, psycopg.Cursor(raw))
    return db.make_debug_cursor(kept[1]) if db.queries_logged else db.make_cursor(kept[1])


def _done(db, cursor) -> None:
    if db.vendor != "postgresql":
        cursor.close()


def _execute(db, cursor, sql: str, params: list) -> None:
    """cursor.execute, as a prepared statement on PostgreSQL: the server
    parses and plans it once per connection, not on every call. Through the
    connection's execute wrappers (connection.execute_wrapper(), with the context
    Django documents for them) and its error translation; with queries logged
    (DEBUG, tests that count queries), the plain logged execute. A pooler in
    transaction mode must keep prepared statements per client (PgBouncer's
    max_prepared_statements)."""
    if db.vendor != "postgresql" or db.queries_logged:
        cursor.execute(sql, params)
        return

    def prepared(sql, params, _many, _context):
        db.validate_no_broken_transaction()
        with db.wrap_database_errors:
            return cursor.cursor.execute(sql, params, prepare=True)

    executor = prepared
    for wrapper in reversed(db.execute_wrappers):
        executor = functools.partial(wrapper, executor)
    executor(sql, params, False, {"connection": db, "cursor": cursor})


@cache
def _statement(model: type[models.Model], guarded: bool = False) -> tuple[str, list]:
    fields = [field for field in model._meta.concrete_fields
              if not isinstance(field, AutoFieldMixin)]
    quote = connection.ops.quote_name
    placeholders = ", ".join(["%s"] * len(fields))
    # Names from the model, values as parameters.
    values = (f"SELECT {placeholders} FROM guard" if guarded  # noqa: S608
              else f"VALUES ({placeholders})")
    sql = (f"INSERT INTO {quote(model._meta.db_table)} "
           f"({', '.join(quote(field.column) for field in fields)}) {values}")
    return sql, fields


def _params(db, model: type[models.Model], values: dict,
            guarded: bool = False) -> tuple[str, list]:
    sql, fields = _statement(model, guarded)
    values = dict(values)
    params = [field.get_db_prep_save(values.pop(field.attname) if field.attname in values
                                     else field.get_default(), db)
              for field in fields]
    if values:
        raise TypeError(f"{model.__name__} has no fields {sorted(values)}")
    return sql, params


@cache
def _guard(model: type[models.Model], equal: tuple[str, ...],
           null_or_at_least: tuple[str, ...]) -> tuple[str, list]:
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    fields = [model._meta.get_field(name) for name in (*equal, *null_or_at_least)]
    columns = [quote(field.column) for field in fields]
    conditions = [f"{column} = %s" for column in columns[:len(equal)]] + [
        f"({column} IS NULL OR {column} >= %s)" for column in columns[len(equal):]]
    return (f"SELECT 1 FROM {table} WHERE {' AND '.join(conditions)}",  # noqa: S608
            fields)


def guard(model: type[models.Model], *, equal: dict,
          null_or_at_least: dict | None = None) -> tuple[str, list]:
    """A condition for insert_rows(only_if=...): a row of `model` exists
    whose fields equal `equal` and are each null or at least
    `null_or_at_least`. Built once per model and set of names."""
    null_or_at_least = null_or_at_least or {}
    sql, fields = _guard(model, tuple(equal), tuple(null_or_at_least))
    values = [*equal.values(), *null_or_at_least.values()]
    db = _db()
    return sql, [field.get_db_prep_value(value, db)
                 for field, value in zip(fields, values, strict=True)]


def insert_rows(rows: list[tuple[type[models.Model], dict]], *,
                only_if: tuple[str, list] | None = None) -> bool:
    """INSERTs rows, all or none: `values` by attname (unit_id, not unit);
    other fields take their defaults; no signals, no save(). On PostgreSQL they go
    in one statement, which needs no transaction of its own: outside one it
    commits by itself, in a single round trip, where BEGIN, the INSERTs and
    COMMIT would take one each.

    With `only_if` (from guard()), the rows are inserted only if its row
    exists when they are: on PostgreSQL the same statement checks it, so
    nothing can change in between that its snapshot would not see. Returns
    whether the rows were inserted."""
    guarded, db = only_if is not None, _db()
    in_one = db.vendor == "postgresql"
    statements = [_params(db, model, values, guarded and in_one) for model, values in rows]
    if not in_one:
        with transaction.atomic(), db.cursor() as cursor:
            if guarded:
                cursor.execute(only_if[0], only_if[1])
                if cursor.fetchone() is None:
                    return False
            for sql, params in statements:
                cursor.execute(sql, params)
        return True
    *first, (sql, params) = statements
    ctes = [f"w{index} AS ({statement})" for index, (statement, _p) in enumerate(first)]
    params = [param for _sql, first_params in first for param in first_params] + params
    if guarded:
        ctes.insert(0, f"guard AS ({only_if[0]})")
        params = [*only_if[1], *params]
    if ctes:
        sql = "WITH " + ", ".join(ctes) + " " + sql
    cursor = _cursor(db)
    _execute(db, cursor, sql, params)
    # The last INSERT, like every other, wrote a row or, guarded, none.
    return cursor.rowcount == 1


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
    db = _db()
    cursor = _cursor(db)
    _execute(db, cursor, sql, [model._meta.get_field(field).get_db_prep_value(value, db)])
    row = cursor.fetchone()
    _done(db, cursor)
    if row is None:
        return None
    values = []
    for raw, (column, column_converters) in zip(row, converters, strict=True):
        for converter in column_converters:
            raw = converter(raw, column, db)
        values.append(raw)
    return model.from_db(db.alias, names, values)


@cache
def _select_value(model: type[models.Model], column_field: str,
                  where: tuple[str, ...]) -> tuple[str, list]:
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in where]
    sql = (f"SELECT {quote(model._meta.get_field(column_field).column)} "  # noqa: S608
           f"FROM {quote(model._meta.db_table)} WHERE "
           + " AND ".join(f"{quote(field.column)} = %s" for field in fields))
    return sql, fields


def value_where(model: type[models.Model], column_field: str, **where):
    """The raw value of `column_field` of the row whose fields equal `where`
    (a unique set of them), or None: for integer keys and other values that
    need no conversion from the database."""
    sql, fields = _select_value(model, column_field, tuple(where))
    db = _db()
    cursor = _cursor(db)
    _execute(db, cursor, sql, [field.get_db_prep_value(value, db)
                               for field, value in zip(fields, where.values(), strict=True)])
    row = cursor.fetchone()
    _done(db, cursor)
    return None if row is None else row[0]
