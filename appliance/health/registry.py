"""registry: does the internal registry answer, and does it hold every image an active template names (EREG01/02)?"""

from __future__ import annotations

import asyncio
from typing import Any

from appliance.errors import OperatorError
from appliance.health.context import HealthContext, finding, section
from appliance.pki.ca import CertificateAuthority
from appliance.registry import site
from appliance.registry.catalog import TagInfo
from appliance.registry.references import parse_reference
from appliance.sdk.health import HealthSection, Severity
from appliance.templates import images

SUBJECT = "health-check"  # `sub` of the registry tokens this check signs, for the registry's log


async def check(ctx: HealthContext) -> HealthSection:
    used = await ctx.read(images.usage) if ctx.has_database else {}
    return await asyncio.to_thread(_check, ctx, used)


def _check(ctx: HealthContext, used: dict[str, list[str]]) -> HealthSection:
    ca = CertificateAuthority.for_site(ctx.config)
    host = site.advertised_host(ctx.config)
    if not ca.is_initialised():
        return section(registry=host, skipped="no internal CA, so no internal registry")
    try:
        held = site.catalog(ctx.config, ca, SUBJECT).everything()
    except OperatorError as err:
        return section([finding("EREG01", Severity.ERROR, f"The registry at {host} cannot be reached: {err.message} "
                                "Check it runs: systemctl status appliance-registry; then its journal.")],
                       registry=host)
    internal = site.internal_hosts(ctx.config)
    missing = {image: names for image, names in used.items() if _is_missing(image, held, internal)}
    details: dict[str, Any] = {"registry": host, "tags": len(held), "images_used": sorted(used)}
    return section([finding("EREG02", Severity.ERROR, f"Image {image}, used by template(s) {', '.join(names)}, is not "
                            "in the registry: workspaces of those templates cannot start. Import it with "
                            "'appliance images import'.")
                    for image, names in sorted(missing.items())], **details)


def _is_missing(image: str, held: list[TagInfo], internal: frozenset[str]) -> bool:
    try:
        ref = parse_reference(image)
    except ValueError:
        return False  # not ours to judge: the template import already accepted it
    if ref.host not in internal:
        return False  # an external registry's image: nothing this appliance holds
    return not any(info.repository == ref.repository and (info.tag == ref.tag if ref.digest is None
                                                          else info.digest == ref.digest) for info in held)
