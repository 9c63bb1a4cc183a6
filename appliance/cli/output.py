"""Report output for client commands: a table for people, JSON for scripts (--output json)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def output_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--output", "-o", "output", type=click.Choice(["table", "json"]),
                        default="table", show_default=True, help="Output format.")(func)


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[Column], output: str,
         raw: Any = None) -> None:
    if output == "json":
        click.echo(json.dumps(raw if raw is not None else list(rows), indent=2))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title, _ in columns:
        table.add_column(title, overflow="fold")
    for row in rows:
        table.add_row(*(str(get(row)) if get(row) is not None else "" for _, get in columns))
    Console(highlight=False, soft_wrap=True).print(table)


def emit_one(obj: dict[str, Any], output: str, fields: Sequence[Column]) -> None:
    if output == "json":
        click.echo(json.dumps(obj, indent=2))
        return
    width = max(len(title) for title, _ in fields)
    for title, get in fields:
        click.echo(f"{title + ':':<{width + 2}}{get(obj) if get(obj) is not None else ''}")
