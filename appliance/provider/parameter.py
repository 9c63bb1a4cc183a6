"""Template parameters: their definition and the checks a value must pass (pure, no terraform).

A parameter's value is always a string: numbers as written ("3", "2.5"), bools as "true" or
"false", list(string) as a JSON list. Rules follow Coder's: options restrict the value (each
element, for list(string)); validation min/max apply to numbers, regex to strings (a search, as
Go's MatchString), and validation.error may use {name}, {value}, {min} and {max}.

Regexes run in RE2 (Go's syntax and semantics, linear in the value's length), never in Python's
backtracking `re`, so no pattern can pin the thread that checks a value; a pattern RE2 cannot
compile (backreferences, lookarounds) is a bad definition, refused when the template is imported.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache

import re2

TYPES = ("string", "number", "bool", "list(string)")
_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the template's author, not on stderr


@dataclass(frozen=True)
class Option:
    name: str
    value: str
    description: str = ""


@dataclass(frozen=True)
class Validation:
    min: float | None = None
    max: float | None = None
    regex: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str = "string"
    default: str | None = None
    options: tuple[Option, ...] = ()
    validation: Validation | None = None

    @property
    def is_required(self) -> bool:
        """A parameter without a default needs a value in every workspace build."""
        return self.default is None


class ParameterError(ValueError):
    """A definition or a value that breaks a rule; summary and detail become a terraform diagnostic."""

    def __init__(self, summary: str, detail: str) -> None:
        super().__init__(f"{summary}: {detail}")
        self.summary = summary
        self.detail = detail


class RegexError(ValueError):
    """A validation regex RE2 cannot compile; the message says why."""


@lru_cache(maxsize=256)
def compile_regex(pattern: str) -> re2._Regexp:
    """The pattern compiled by RE2, or RegexError (RE2 has no backreferences or lookarounds)."""
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as err:
        reason = err.args[0].decode(errors="replace") if err.args and isinstance(err.args[0], bytes) else str(err)
        raise RegexError(reason) from err


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def parse_number(value: str) -> float | None:
    """The number a decimal value holds ("3", "-2.5", "1e3"), or None."""
    if not _NUMBER.fullmatch(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _parse_list(value: str) -> list[str] | None:
    try:
        items = json.loads(value)
    except ValueError:
        return None
    return items if isinstance(items, list) and all(isinstance(i, str) for i in items) else None


def _shape_rule(kind: str, value: str) -> str | None:
    """The type rule `value` breaks, or None."""
    if kind == "number" and parse_number(value) is None:
        return "is not a number"
    if kind == "bool" and value not in ("true", "false"):
        return 'is not a bool (use "true" or "false")'
    if kind == "list(string)" and _parse_list(value) is None:
        return 'is not a JSON list of strings (e.g. ["a", "b"])'
    return None


def _validation_rule(validation: Validation, kind: str, value: str) -> str | None:
    """The validation rule `value` breaks, or None."""
    if kind == "number":
        number = parse_number(value)
        assert number is not None  # the shape was checked first
        low, high = validation.min, validation.max
        if low is not None and high is not None and not low <= number <= high:
            return f"is not between {_number_text(low)} and {_number_text(high)} (validation min and max)"
        if low is not None and number < low:
            return f"is less than {_number_text(low)} (validation min)"
        if high is not None and number > high:
            return f"is more than {_number_text(high)} (validation max)"
    if kind == "string" and validation.regex is not None:
        try:
            matched = compile_regex(validation.regex).search(value) is not None
        except RegexError:
            return f"cannot be checked: the regex {validation.regex} does not compile"
        if not matched:
            return f"does not match the regex {validation.regex} (validation regex)"
    return None


def _custom_error(parameter: Parameter, validation: Validation, value: str) -> str:
    text = validation.error or ""
    fields = {"{name}": parameter.name, "{value}": value,
              "{min}": _number_text(validation.min) if validation.min is not None else "",
              "{max}": _number_text(validation.max) if validation.max is not None else ""}
    for placeholder, replacement in fields.items():
        text = text.replace(placeholder, replacement)
    return text


def _invalid(parameter: Parameter, value: str, rule: str, explanation: str = "") -> ParameterError:
    detail = f"The value {json.dumps(value)} {rule}."
    if explanation:
        detail += f" {explanation}"
    return ParameterError(f'Invalid value for parameter "{parameter.name}"', detail)


def check_value(parameter: Parameter, value: str) -> None:
    """Raise ParameterError naming the parameter, the value and the rule it breaks."""
    shape = _shape_rule(parameter.type, value)
    if shape:
        raise _invalid(parameter, value, shape)
    if parameter.options:
        allowed = [o.value for o in parameter.options]
        is_list = parameter.type == "list(string)"
        chosen = (_parse_list(value) or []) if is_list else [value]
        outside = [c for c in chosen if c not in allowed]
        if outside:
            what = f"holds {', '.join(map(json.dumps, outside))}, which is" if is_list else "is"
            raise _invalid(parameter, value, f"{what} not one of the options: {', '.join(map(json.dumps, allowed))}")
    if parameter.validation:
        rule = _validation_rule(parameter.validation, parameter.type, value)
        if rule:
            raise _invalid(parameter, value, rule, _custom_error(parameter, parameter.validation, value))


def definition_problems(parameter: Parameter) -> list[str]:
    """What is wrong with the parameter block itself (a template bug, reported at validate time)."""
    problems: list[str] = []
    kind = parameter.type
    if kind not in TYPES:
        return [f'type "{kind}" is not one of {", ".join(TYPES)}']
    names, values = [o.name for o in parameter.options], [o.value for o in parameter.options]
    for label, items in (("name", names), ("value", values)):
        repeated = sorted({i for i in items if items.count(i) > 1})
        if repeated:
            problems.append(f"option {label}s must be unique; repeated: {', '.join(map(json.dumps, repeated))}")
    element = "string" if kind == "list(string)" else kind
    problems += [f'option "{o.name}" has value {json.dumps(o.value)}, which {_shape_rule(element, o.value)}'
                 for o in parameter.options if _shape_rule(element, o.value)]
    validation = parameter.validation
    if validation is not None:
        if (validation.min is not None or validation.max is not None) and kind != "number":
            problems.append(f"validation min and max apply to number parameters, not {kind}")
        if validation.min is not None and validation.max is not None and validation.min > validation.max:
            problems.append(f"validation min {_number_text(validation.min)} is more than max "
                            f"{_number_text(validation.max)}")
        if validation.regex is not None:
            if kind != "string":
                problems.append(f"validation regex applies to string parameters, not {kind}")
            try:
                compile_regex(validation.regex)
            except RegexError as err:
                problems.append(f"validation regex {validation.regex} does not compile in RE2, the syntax of Go's "
                                f"regexp that Coder's templates use ({err}); RE2 has no backreferences (\\1) or "
                                "lookarounds ((?=...), (?<=...)), so rewrite the pattern without them")
    if not problems and parameter.default is not None:
        try:
            check_value(parameter, parameter.default)
        except ParameterError as err:
            problems.append("the default " + err.detail.removeprefix("The value ").rstrip("."))
    return problems


def check_definition(parameter: Parameter) -> None:
    problems = definition_problems(parameter)
    if problems:
        listed = "; ".join(problems)
        raise ParameterError(f'Invalid definition of parameter "{parameter.name}"',
                             f"{listed[0].upper()}{listed[1:]}. Fix its appliance_parameter block in the template.")


def resolve_value(parameter: Parameter, supplied: str | None, *, is_build: bool) -> str:
    """The value a template sees: the supplied one, else the default.

    A workspace build must give every required parameter a value; a template import (which only
    reads the definitions) sees "" instead.
    """
    if supplied is not None:
        value = supplied
    elif parameter.default is not None:
        value = parameter.default
    elif is_build:
        raise ParameterError(
            f'Missing value for required parameter "{parameter.name}"',
            f'Parameter "{parameter.name}" has no default and this build did not give it a value. Give it one '
            f"when creating or updating the workspace (appliance create ... --parameter {parameter.name}=VALUE).")
    else:
        return ""
    check_value(parameter, value)
    return value
