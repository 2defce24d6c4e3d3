"""Database helpers shared by the apps."""

from collections.abc import Sequence
from functools import lru_cache
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


def insert(objs: Sequence[Model]) -> None:
    """INSERT new rows of one model in one statement and give each object its key, as
    `bulk_create` does: `auto_now_add` and `auto_now` stamped, related objects' keys copied,
    no signals, nothing else read back.

    For the hot write paths (an order placement writes four tables). `bulk_create` builds its
    statement through the ORM's compiler on every call, about 0.3 ms of CPU per statement
    here; this builds it once per model and row count and only converts the values
    (bench/ORDERS_RESULTS.md). Fields filled by the database (`db_default`, generated
    columns) are not supported."""
    if not objs:
        return
    model = type(objs[0])
    if any(type(obj) is not model or obj.pk is not None for obj in objs):
        raise ValueError("insert() takes new objects of one model")
    for start in range(0, len(objs), BATCH_ROWS):
        _insert_batch(model, objs[start : start + BATCH_ROWS])


# Rows per statement: few statements, few cached texts, and far below PostgreSQL's 65,535
# parameters.
BATCH_ROWS = 100


def _insert_batch(model: type[Model], objs: Sequence[Model]) -> None:
    sql, fields = _insert_statement(model, len(objs))
    db = _this_threads_connection()
    params = []
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="insert")
        params.extend(field.get_db_prep_save(field.pre_save(obj, True), db) for field in fields)
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        keys = cursor.fetchall()
    for obj, (pk,) in zip(objs, keys, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = db.alias


def _this_threads_connection() -> BaseDatabaseWrapper:
    """The default database's connection object itself. `django.db.connection` is a proxy
    that looks the thread's connection up again on every attribute read; the fields'
    conversions read it several times per value (≈ 100 reads per order placed)."""
    return connections[DEFAULT_DB_ALIAS]


@lru_cache(maxsize=256)
def _insert_statement(model: type[Model], rows: int) -> tuple[str, list[Field]]:
    meta = model._meta
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    # A database-side default alone leaves the instance a DatabaseDefault to write as
    # DEFAULT; with a Python default beside it (for rows written by older code or raw SQL),
    # the instance holds the value itself.
    unfilled = [f for f in fields if (f.has_db_default() and not f.has_default()) or f.generated]
    if unfilled:
        raise ValueError(f"insert() cannot fill {meta.label}'s database-side defaults")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    values = ", ".join([row] * rows)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {values} "  # noqa: S608
        f"RETURNING {quote(meta.pk.column)}"
    )
    return sql, fields


def select(
    model: type[M],
    clause: str,
    params: Sequence,
    *,
    defer: frozenset[str] = frozenset(),
    annotate: tuple[tuple[str, str], ...] = (),
) -> list[M]:
    """Rows of `model`'s table as instances, read by one SELECT whose text is built once:
    `clause` follows `FROM <table>` (WHERE, ORDER BY, FOR UPDATE…) and names the table's
    columns as they are in the database; the fields named in `defer` are not read and load
    on access, as with `.defer()`; each (name, SQL expression) of `annotate` is read after
    the columns and set on the instance under that name, as `.annotate()` does, its
    parameters first in `params`. What `model.objects.filter(…)` would give, for the hot
    reads whose ORM query building cost more than the read itself (the listings an order
    locks, the user of every request: bench/ORDERS_RESULTS.md)."""
    sql, attnames, converters = _select_statement(model, clause, defer, annotate)
    db = _this_threads_connection()
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    instances = []
    columns = len(attnames)
    for row in rows:
        values = list(row[:columns])
        for position, functions, column in converters:
            for convert in functions:
                values[position] = convert(values[position], column, db)
        instance = model.from_db(db.alias, attnames, values)
        for (name, _expression), value in zip(annotate, row[columns:], strict=True):
            setattr(instance, name, value)
        instances.append(instance)
    return instances


@lru_cache(maxsize=64)
def _select_statement(
    model: type[Model], clause: str, defer: frozenset[str], annotate: tuple[tuple[str, str], ...]
) -> tuple:
    """The SELECT, the fields' attnames, and the converters the ORM would apply to each
    column read (a JSON field's decoding, say), by position."""
    fields = [field for field in model._meta.concrete_fields if field.name not in defer]
    quote = connection.ops.quote_name
    columns = ", ".join(
        [quote(field.column) for field in fields]
        + [f"({expression}) AS {quote(name)}" for name, expression in annotate]
    )
    sql = f"SELECT {columns} FROM {quote(model._meta.db_table)} {clause}"  # noqa: S608
    converters = []
    for position, field in enumerate(fields):
        column = field.cached_col
        functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if functions:
            converters.append((position, functions, column))
    return sql, [field.attname for field in fields], converters


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, ending in "…" when cut: to fit a varchar column,
    which counts code points (as len() does; Django's Truncator does not count combining
    marks, so Tibetan vowel signs let its result overflow the column)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
