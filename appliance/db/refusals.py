"""A value PostgreSQL refused (a CHECK, a type's range, a NUL) as the 400 a client can act on.

The last line of defence: the wire models and services should refuse such input first, so each
refusal that gets this far is logged as a gap in them.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import errors

from appliance.errors import InvalidInput

log = logging.getLogger(__name__)

HINT = "Check the value against the field's rules (see /api/v2/openapi.json) and send it again."


def _checked_field(err: errors.CheckViolation) -> str:
    """users_username_check on table users names the field `username`."""
    constraint, table = err.diag.constraint_name or "", err.diag.table_name or ""
    return constraint.removeprefix(f"{table}_").removesuffix("_check") or "value"


def refused_value(err: BaseException) -> InvalidInput | None:
    """The 400 for a value PostgreSQL cannot or will not store, or None for any other failure."""
    if isinstance(err, errors.CheckViolation):
        field = _checked_field(err)
        refusal = InvalidInput(f"Invalid field '{field}': the value breaks the rule {err.diag.constraint_name}.",
                               HINT, field=field)
    elif isinstance(err, psycopg.DataError):
        field = err.diag.column_name or "value"
        refusal = InvalidInput(f"Invalid field '{field}': the database cannot store it ({err}).".replace("\n", " "),
                               HINT, field=field)
    else:
        return None
    log.warning("value_refused_by_database", extra={"field": field, "error": str(err).splitlines()[0]})
    return refusal
