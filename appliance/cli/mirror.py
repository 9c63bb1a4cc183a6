"""`appliance mirror`: dispatches to the mirror package (build, verify, list, diff, coverage, cli-config)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from appliance.cli.output import Column, emit
from appliance.config import default_data_dir
from mirror.build import build_mirror
from mirror.cliconfig import registry_host, terraform_cli_config
from mirror.coverage import coverage
from mirror.inventory import diff_trees, entries, verify_tree
from mirror.signing import signing_key

ENTRY_COLUMNS: list[Column] = [
    ("Provider", lambda e: e["source"]),
    ("Version", lambda e: e["version"]),
    ("Platform", lambda e: e["platform"]),
    ("Archive", lambda e: e["archive"]),
]


def _default_signing_home() -> Path:
    return Path(os.environ.get("APPLIANCE_MIRROR_SIGNING_HOME") or default_data_dir() / "mirror-signing")


@click.group()
def mirror() -> None:
    """Build and check the Terraform provider mirror the provisioner installs from."""


@mirror.command()
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--from", "sources", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Provider zips laid out HOSTNAME/NAMESPACE/TYPE/ (e.g. `terraform providers mirror` output).")
@click.option("--registry", "registries", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="The appliance's own providers, laid out NAMESPACE/TYPE/, served by its registry protocol.")
@click.option("--signing-home", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="GPG home of the mirror signing key, made there on first use "
                   "[env APPLIANCE_MIRROR_SIGNING_HOME; default DATA_DIR/mirror-signing].")
def build(out_dir: Path, sources: tuple[Path, ...], registries: tuple[Path, ...], signing_home: Path | None) -> None:
    """Add provider packages to the mirror tree OUT_DIR (the previous tree stays if anything fails)."""
    if not sources and not registries:
        raise click.UsageError("Give at least one --from or --registry folder.")
    key = signing_key(signing_home or _default_signing_home()) if registries else None
    result = build_mirror(out_dir, list(sources), list(registries), key)
    click.echo(f"Mirror {out_dir}: {len(result.mirrored)} mirrored and {len(result.registered)} registry "
               f"package(s), {result.added} new.")
    if key:
        click.echo(f"Registry signing key {key.key_id} ({key.home}).")


@mirror.command()
@click.argument("tree", type=click.Path(path_type=Path, file_okay=False, exists=True))
def verify(tree: Path) -> None:
    """Re-hash every archive against its published hashes and check the SHA256SUMS signatures."""
    problems = verify_tree(tree)
    for problem in problems:
        click.secho(f"MISMATCH {problem}", fg="red", err=True)
    count = len(entries(tree))
    if problems:
        click.echo(f"{len(problems)} problem(s) in {count} package(s).", err=True)
        sys.exit(1)
    click.echo(f"OK: {count} package(s) match their published hashes.")


def _listing(tree: Path) -> list[dict[str, Any]]:
    return [{"source": e.source, "version": e.version, "platform": e.platform, "archive": e.archive.name,
             "hashes": list(e.hashes)} for e in entries(tree)]


@mirror.command("list")
@click.argument("tree", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_tree(tree: Path, output: str) -> None:
    """Print the providers, versions and platforms a mirror holds."""
    emit(_listing(tree), ENTRY_COLUMNS, output)


@mirror.command()
@click.argument("old", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("new", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
def diff(old: Path, new: Path, output: str) -> None:
    """Show providers added, removed or changed between two mirror trees."""
    rows = [{"change": d.change, "source": d.source, "version": d.version, "platform": d.platform}
            for d in diff_trees(old, new)]
    emit(rows, [("Change", lambda r: r["change"]), *ENTRY_COLUMNS[:3]], output)


@mirror.command("coverage")
@click.argument("tree", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("templates", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--appliance-host", default="", help="Host name that means this appliance in source addresses.")
@click.option("--platform", default="linux_amd64", show_default=True)
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
def coverage_command(tree: Path, templates: tuple[Path, ...], appliance_host: str, platform: str, output: str) -> None:
    """Report every provider constraint in TEMPLATES that the mirror TREE cannot satisfy (exit 1)."""
    findings = coverage(tree, list(templates), appliance_host=appliance_host, platform=platform)
    rows = [{"source": f.requirement.source, "constraint": f.requirement.constraint or "(any)",
             "template": str(f.requirement.template), "chosen": f.chosen,
             "available": ", ".join(f.available) or "none"} for f in findings]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        emit(rows, [("Provider", lambda r: r["source"]), ("Constraint", lambda r: r["constraint"]),
                    ("Chosen", lambda r: r["chosen"] or "NOT COVERED"), ("In mirror", lambda r: r["available"]),
                    ("Template", lambda r: r["template"])], "table")
    missing = [f for f in findings if not f.is_covered]
    if missing:
        click.echo(f"{len(missing)} of {len(findings)} provider requirement(s) cannot be satisfied by {tree}.",
                   err=True)
        sys.exit(1)


@mirror.command("cli-config")
@click.option("--access-url", required=True, help="The appliance's URL, e.g. https://appliance.example.org")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), default=None)
def cli_config(access_url: str, output: Path | None) -> None:
    """Print the Terraform CLI configuration that installs providers only from this appliance."""
    text = terraform_cli_config(access_url)
    if output:
        output.write_text(text)
        click.echo(f"Wrote {output}; run terraform with TF_CLI_CONFIG_FILE={output} and SSL_CERT_FILE=<CA bundle>.",
                   err=True)
    else:
        click.echo(text, nl=False)
    click.echo(f"Providers with source host {registry_host(access_url)} come from its registry.", err=True)
