"""Refuse control characters in a request's path, query and form before any view reads them.

Declared once for every route, the API's and the console's: a NUL byte or an escape in a URL
never names anything, and PostgreSQL cannot store a NUL at all.
"""

from __future__ import annotations

import re

from flask import request

from appliance.errors import InvalidInput
from appliance.sdk.base import TEXT_HINT, unsafe_character

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def _refuse(where: str, field: str, value: str, *, multiline: bool = False) -> None:
    if (bad := unsafe_character(value, multiline=multiline)) is not None:
        raise InvalidInput(f"The {where} holds the control character {bad}.", TEXT_HINT, field=field)


# A path of printable ASCII holds no control character however it decodes: most requests skip the decoding.
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


def refuse_unsafe_request() -> None:
    """A before_request hook: a 400 naming the path, the query parameter or the form field."""
    if not _PRINTABLE_ASCII.fullmatch(request.environ.get("PATH_INFO", "")):
        _refuse("path", "path", request.path)
    if not request.environ.get("QUERY_STRING") and request.mimetype not in _FORMS:
        return
    for name, value in request.args.items(multi=True):
        _refuse("name of a query parameter", "query", name)
        _refuse(f"query parameter {name!r}", name, value)
    if request.mimetype in _FORMS:
        for name, value in request.form.items(multi=True):
            _refuse("name of a form field", "form", name)
            _refuse(f"form field {name!r}", name, value, multiline=True)
