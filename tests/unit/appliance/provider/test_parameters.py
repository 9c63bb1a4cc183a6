"""Template parameter rules (appliance/provider/parameter.py): values, definitions, and which value a build sees."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.provider.parameter import (
    Option,
    Parameter,
    ParameterError,
    Validation,
    check_definition,
    check_value,
    definition_problems,
    resolve_value,
)

REGIONS = (Option("Europe", "eu"), Option("United States", "us"))
LANGUAGES = (Option("Go", "go"), Option("Python", "python"), Option("Rust", "rust"))
LOWERCASE = Validation(regex="^[a-z]+$", error="Use lowercase letters only.")


@pytest.mark.parametrize(("parameter", "value"), [
    (Parameter("motd"), ""),
    (Parameter("motd"), "anything at all, even 'quotes' and ünïcode"),
    (Parameter("user", validation=LOWERCASE), "alice"),
    (Parameter("cpus", "number"), "3"),
    (Parameter("ratio", "number"), "-2.5"),
    (Parameter("big", "number"), "1e3"),
    (Parameter("cpus", "number", validation=Validation(min=1, max=8)), "1"),
    (Parameter("cpus", "number", validation=Validation(min=1, max=8)), "8"),
    (Parameter("gpu", "bool"), "true"),
    (Parameter("gpu", "bool"), "false"),
    (Parameter("tools", "list(string)"), "[]"),
    (Parameter("tools", "list(string)", options=LANGUAGES), '["go", "rust"]'),
    (Parameter("region", options=REGIONS), "eu"),
], ids=[
    "an empty string needs no rule",
    "a string without rules takes any text",
    "a string matching its regex",
    "an integer",
    "a negative decimal",
    "an exponent",
    "a number at its min (inclusive)",
    "a number at its max (inclusive)",
    "bool true",
    "bool false",
    "an empty list",
    "a list whose elements are all options",
    "a value that is one of the options",
])
def test_valid_values_pass(parameter: Parameter, value: str) -> None:
    check_value(parameter, value)


@pytest.mark.parametrize(("parameter", "value", "rule"), [
    (Parameter("user", validation=LOWERCASE), "Alice",
     "does not match the regex ^[a-z]+$ (validation regex). Use lowercase letters only."),
    (Parameter("cpus", "number"), "many", "is not a number"),
    (Parameter("cpus", "number"), "1_000", "is not a number"),
    (Parameter("cpus", "number"), "inf", "is not a number"),
    (Parameter("cpus", "number"), " 3", "is not a number"),
    (Parameter("cpus", "number", validation=Validation(min=1, max=8)), "9",
     "is not between 1 and 8 (validation min and max)"),
    (Parameter("cpus", "number", validation=Validation(min=1)), "0.5", "is less than 1 (validation min)"),
    (Parameter("cpus", "number", validation=Validation(max=8.5)), "9", "is more than 8.5 (validation max)"),
    (Parameter("gpu", "bool"), "yes", 'is not a bool (use "true" or "false")'),
    (Parameter("tools", "list(string)"), "go,rust", "is not a JSON list of strings"),
    (Parameter("tools", "list(string)"), "[1, 2]", "is not a JSON list of strings"),
    (Parameter("tools", "list(string)", options=LANGUAGES), '["go", "cobol"]',
     'holds "cobol", which is not one of the options: "go", "python", "rust"'),
    (Parameter("region", options=REGIONS), "asia", 'is not one of the options: "eu", "us"'),
], ids=[
    "a string that misses its regex, with the template's own error text",
    "a number that is a word",
    "a number with Python-only underscores",
    "infinity",
    "a number with a leading space",
    "a number above the range",
    "a number below min",
    "a number above max",
    "a bool that is not true or false",
    "a list that is not JSON",
    "a JSON list of numbers",
    "a list with an element outside the options",
    "a value outside the options",
])
def test_invalid_values_name_the_parameter_the_value_and_the_rule(parameter: Parameter, value: str,
                                                                   rule: str) -> None:
    with pytest.raises(ParameterError) as caught:
        check_value(parameter, value)
    assert caught.value.summary == f'Invalid value for parameter "{parameter.name}"'
    assert caught.value.detail.startswith(f"The value {json.dumps(value)} {rule}")


def test_the_custom_error_text_may_use_name_value_min_and_max() -> None:
    cpus = Parameter("cpus", "number", validation=Validation(min=1, max=8, error="{name} is {value}; pick {min}-{max}"))
    with pytest.raises(ParameterError, match="cpus is 12; pick 1-8"):
        check_value(cpus, "12")


@given(low=st.integers(-50, 50), span=st.integers(0, 50), value=st.integers(-120, 120))
def test_a_number_passes_exactly_when_it_lies_within_min_and_max(low: int, span: int, value: int) -> None:
    parameter = Parameter("n", "number", validation=Validation(min=low, max=low + span))
    try:
        check_value(parameter, str(value))
        passed = True
    except ParameterError:
        passed = False
    assert passed == (low <= value <= low + span)


@pytest.mark.parametrize(("parameter", "problem"), [
    (Parameter("cpus", "integer"), 'type "integer" is not one of string, number, bool, list(string)'),
    (Parameter("region", options=(Option("Europe", "eu"), Option("Also Europe", "eu"))),
     'option values must be unique; repeated: "eu"'),
    (Parameter("size", "number", options=(Option("Small", "s"),)),
     'option "Small" has value "s", which is not a number'),
    (Parameter("user", validation=Validation(min=1)), "validation min and max apply to number parameters, not string"),
    (Parameter("cpus", "number", validation=Validation(regex="^[0-9]$")),
     "validation regex applies to string parameters, not number"),
    (Parameter("cpus", "number", validation=Validation(min=8, max=1)), "validation min 8 is more than max 1"),
    (Parameter("user", validation=Validation(regex="([a-z")), "validation regex ([a-z does not compile"),
    (Parameter("user", default="Bob", validation=LOWERCASE), 'the default "Bob" does not match the regex ^[a-z]+$'),
    (Parameter("region", default="asia", options=REGIONS), 'the default "asia" is not one of the options'),
], ids=[
    "an unknown type",
    "two options with one value",
    "an option value that does not fit the type",
    "min on a string",
    "a regex on a number",
    "min above max",
    "a regex that does not compile",
    "a default that breaks the parameter's own validation",
    "a default outside the options",
])
def test_a_bad_definition_is_reported_with_what_to_fix(parameter: Parameter, problem: str) -> None:
    problems = definition_problems(parameter)
    assert any(p.startswith(problem) for p in problems), problems
    with pytest.raises(ParameterError, match=f'Invalid definition of parameter "{parameter.name}"'):
        check_definition(parameter)


def test_a_sound_definition_has_no_problems() -> None:
    assert definition_problems(Parameter("region", default="eu", options=REGIONS)) == []
    assert definition_problems(Parameter("cpus", "number", default="2", validation=Validation(min=1, max=8))) == []
    assert definition_problems(Parameter("tools", "list(string)", default='["go"]', options=LANGUAGES)) == []


@pytest.mark.parametrize(("parameter", "supplied", "is_build", "expected"), [
    (Parameter("user", default="alice"), "bob", True, "bob"),
    (Parameter("user", default="alice"), None, True, "alice"),
    (Parameter("user", default=""), None, True, ""),
    (Parameter("region", options=REGIONS), None, False, ""),
    (Parameter("region", options=REGIONS), "us", False, "us"),
], ids=[
    "a supplied value wins over the default",
    "the default stands in for a missing value",
    "an empty default is a value",
    "a template import sees an empty value for a required parameter",
    "a template import still takes a supplied value",
])
def test_the_value_a_template_sees(parameter: Parameter, supplied: str | None, is_build: bool,
                                   expected: str) -> None:
    assert resolve_value(parameter, supplied, is_build=is_build) == expected


def test_a_build_without_a_value_for_a_required_parameter_fails_naming_it() -> None:
    with pytest.raises(ParameterError) as caught:
        resolve_value(Parameter("region", options=REGIONS), None, is_build=True)
    assert caught.value.summary == 'Missing value for required parameter "region"'
    assert "--parameter region=VALUE" in caught.value.detail


def test_a_supplied_value_is_checked_even_in_an_import() -> None:
    with pytest.raises(ParameterError, match='"asia" is not one of the options'):
        resolve_value(Parameter("region", options=REGIONS), "asia", is_build=False)


CATASTROPHIC = Validation(regex="^([a-z0-9]+-?)*$", error="Use lowercase letters, digits and single hyphens.")


# Python's backtracking re took 1.8 s on 24 characters plus "!", four times longer for every two more, holding
# the GIL throughout (so no timeout fires); RE2 is linear, and 100,000 characters take milliseconds.
@pytest.mark.security(finding=7)
@pytest.mark.parametrize("length", [24, 40, 100_000], ids=["24 characters", "40 characters", "100,000 characters"])
def test_a_catastrophic_regex_answers_at_once_and_right_on_long_values(length: int) -> None:
    slug = Parameter("slug", validation=CATASTROPHIC)
    check_value(slug, "a1-" * (length // 3) + "b" * (length % 3))
    with pytest.raises(ParameterError, match=r"does not match the regex \^\(\[a-z0-9\]\+-\?\)\*\$"):
        check_value(slug, "a" * length + "!")


@pytest.mark.security(finding=7)
@pytest.mark.parametrize(("pattern", "reason"), [
    (r"^(\w+)-\1$", r"invalid escape sequence: \1"),
    (r"^(?=.*[0-9])[a-z0-9]+$", "invalid perl operator: (?="),
    (r"^[a-z]+(?<!-)$", "invalid perl operator: (?<"),
], ids=["a backreference", "a lookahead", "a lookbehind"])
def test_a_regex_re2_cannot_run_is_refused_in_the_definition(pattern: str, reason: str) -> None:
    parameter = Parameter("slug", validation=Validation(regex=pattern))
    with pytest.raises(ParameterError) as refused:
        check_definition(parameter)
    assert refused.value.summary == 'Invalid definition of parameter "slug"'
    assert f"Validation regex {pattern} does not compile in RE2" in refused.value.detail
    assert reason in refused.value.detail
    assert "rewrite the pattern without them" in refused.value.detail


@pytest.mark.parametrize(("pattern", "value", "matches"), [
    (r"\d+", "٣", False),
    (r"^[a-z]+$", "abc\n", False),
    ("b", "abc", True),
], ids=[r"\d is ASCII digits only, as in Go", "$ is the end of the text, not before a final newline",
        "a search, not a full match"])
def test_regexes_follow_go_semantics(pattern: str, value: str, matches: bool) -> None:
    parameter = Parameter("p", validation=Validation(regex=pattern))
    try:
        check_value(parameter, value)
        passed = True
    except ParameterError:
        passed = False
    assert passed == matches
