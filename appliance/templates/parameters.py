"""Template parameters: check the values a user gives against what the template's import found.

The control plane checks before it queues a build, so a bad value is a 400 naming the field,
not a failed build minutes later. The rules are the provider's own (appliance.provider.parameter),
so the control plane and terraform can never disagree about a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from appliance.errors import InvalidInput
from appliance.provider.parameter import Option, Parameter, ParameterError, Validation, check_value


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def as_parameter(spec: Mapping[str, Any]) -> Parameter:
    """The provider's Parameter for a definition stored at import (see provisioner/extract.py)."""
    rules = spec.get("validation") or {}
    validation = Validation(min=_float(rules.get("min")), max=_float(rules.get("max")), regex=rules.get("regex"),
                            error=rules.get("error")) if rules else None
    options = tuple(Option(str(o.get("name", "")), str(o.get("value", "")), str(o.get("description") or ""))
                    for o in spec.get("options") or [])
    default = spec.get("default")
    return Parameter(name=str(spec["name"]), type=spec.get("type") or "string",
                     default=None if default is None else str(default), options=options, validation=validation)


def _invalid(name: str, reason: str) -> InvalidInput:
    return InvalidInput(f"Parameter '{name}': {reason}", "Correct the value and try again.",
                        field=f"parameters.{name}")


def resolve(specs: Sequence[Mapping[str, Any]], given: Mapping[str, str],
            previous: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every parameter's value for a build: given, else the previous build's, else the default.

    Immutable parameters keep the value they were created with; unknown names and missing
    required values are refused so nothing is queued that terraform would reject.
    """
    known = {str(spec["name"]): as_parameter(spec) for spec in specs}
    mutable = {str(spec["name"]) for spec in specs if spec.get("mutable")}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise InvalidInput(f"Unknown parameter(s): {', '.join(unknown)}.",
                           f"This template version takes: {', '.join(known) or 'no parameters'}.",
                           field=f"parameters.{unknown[0]}")
    values: dict[str, str] = {}
    for name, parameter in known.items():
        before = (previous or {}).get(name)
        if name in given:
            if before is not None and name not in mutable and str(given[name]) != before:
                raise _invalid(name, "it cannot be changed after the workspace was created (it is immutable).")
            value: str | None = str(given[name])
        else:
            value = before if before is not None else parameter.default
        if value is None:
            raise _invalid(name, "a value is required.")
        try:
            check_value(parameter, value)
        except ParameterError as err:
            raise _invalid(name, err.detail) from err
        values[name] = value
    return values
