"""The one click group every command-line root uses: operator errors print as message + hint.

Usage: `@click.group(cls=Group)` and `@debug_option` on the root. An OperatorError prints
"error: MESSAGE" and "hint: HINT" on stderr and exits with its exit code, never a traceback;
`--debug` (or APPLIANCE_DEBUG=1, which operators' notes already use) re-raises it instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from operator_errors import OperatorError, exit_code_of

DEBUG_ENV = "APPLIANCE_DEBUG"
_DEBUG_KEY = "operator_errors.debug"  # in ctx.meta, which the whole context tree shares

F = TypeVar("F", bound=Callable[..., Any])


def _remember_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[_DEBUG_KEY] = value
    return value


def debug_option(func: F) -> F:
    """Add --debug to a root command: errors re-raise with their traceback."""
    option = click.option("--debug", is_flag=True, envvar=DEBUG_ENV, show_envvar=True, expose_value=False,
                          is_eager=True, callback=_remember_debug, help="Show the traceback of an error.")
    return option(func)


def is_debug(ctx: click.Context) -> bool:
    return bool(ctx.meta.get(_DEBUG_KEY))


def report(err: OperatorError) -> None:
    """Print err for an operator: the message, then the hint, on stderr."""
    click.echo(f"{click.style('error:', fg='red')} {err.message}", err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)


class Group(click.Group):
    """A click group that prints OperatorError as message + hint and exits with its code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OperatorError as err:
            if is_debug(ctx):
                raise
            report(err)
            ctx.exit(exit_code_of(err))
