"""`appliance releases record|floor`: the installer's receipts, kept in the control plane's PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from appliance.cli.admin import migrated_database
from appliance.cli.server import server_options
from appliance.releases import record_release, version_floor
from appliance.sdk.releases import ReleaseRecord
from operator_errors import OperatorError

_HINT = "Release history belongs to an installed appliance; the installer records it."


@click.group()
def releases() -> None:
    """The history of installs, upgrades, rollbacks and restores."""


@releases.command()
@server_options
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The receipt: a JSON ReleaseRecord written by the installer.")
def record(path: Path, **flags: Any) -> None:
    """Record one installer run (idempotent: the same run twice is stored once)."""
    receipt = read_record(path)
    with migrated_database(flags, "appliance releases", _HINT) as db, db.transaction() as conn:
        release_id, created = record_release(conn, receipt)
    click.echo(f"{'recorded' if created else 'already recorded'}  {release_id}  {receipt.kind} {receipt.to_version}"
               f" {receipt.outcome}")


@releases.command()
@server_options
def floor(**flags: Any) -> None:
    """Print the anti-rollback floor: the highest version installed successfully (nothing if none)."""
    with migrated_database(flags, "appliance releases", _HINT) as db, db.reading() as conn:
        highest = version_floor(conn)
    if highest is not None:
        click.echo(highest)


def read_record(path: Path) -> ReleaseRecord:
    """The receipt in `path`, or an OperatorError naming what is wrong with it."""
    hint = "Write a JSON ReleaseRecord (appliance/sdk/releases.py) and run the command again."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise OperatorError(f"Cannot read {path}: {err.strerror}.", hint) from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise OperatorError(f"{path} is not JSON: {err}.", hint) from err
    try:
        return ReleaseRecord.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}"
                             for e in err.errors()[:5])
        raise OperatorError(f"{path} is not a valid release record: {problems}.", hint) from err
