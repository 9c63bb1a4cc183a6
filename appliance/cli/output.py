"""Report output for client commands: a table for people, JSON for scripts (--output json)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import click
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

# A column's title and how to read its cell from a row (an sdk model, or a dict for local reports).
Column = tuple[str, Callable[[Any], Any]]


def when(moment: datetime | None, missing: str = "", width: int = 19) -> str:
    """A timestamp as the API wrote it, cut to `width` characters (19: to the second)."""
    return moment.isoformat()[:width] if moment is not None else missing


def as_json(value: Any) -> Any:
    """Models as the JSON the server sent; lists of them item by item; anything else as it is."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [as_json(item) for item in value]
    return value


def output_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--output", "-o", "output", type=click.Choice(["table", "json"]),
                        default="table", show_default=True, help="Output format.")(func)


def emit(rows: Sequence[Any], columns: Sequence[Column], output: str, raw: Any = None) -> None:
    if output == "json":
        click.echo(json.dumps(as_json(raw if raw is not None else list(rows)), indent=2))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title, _ in columns:
        table.add_column(title, overflow="fold")
    for row in rows:
        table.add_row(*(str(get(row)) if get(row) is not None else "" for _, get in columns))
    Console(highlight=False, soft_wrap=True).print(table)


def emit_one(obj: Any, output: str, fields: Sequence[Column]) -> None:
    if output == "json":
        click.echo(json.dumps(as_json(obj), indent=2))
        return
    width = max(len(title) for title, _ in fields)
    for title, get in fields:
        click.echo(f"{title + ':':<{width + 2}}{get(obj) if get(obj) is not None else ''}")
