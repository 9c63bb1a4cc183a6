"""access_url: does GET {access_url}/healthz answer 200 "OK" from here (Coder's EACS01..04)?"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import aiohttp

from appliance.health.context import HealthContext, finding, section
from appliance.sdk.health import HealthSection, Severity

TIMEOUT = 5.0


async def check(ctx: HealthContext) -> HealthSection:
    url = ctx.config.access_url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return section([finding("EACS01", Severity.ERROR, f"The access URL {url!r} is not an http(s) URL. "
                                "Set access_url in /etc/appliance/appliance.toml and restart the console.")],
                       access_url=url)
    started = time.perf_counter()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session, \
                session.get(url + "/healthz", ssl=ctx.ssl_context() or False, allow_redirects=False) as response:
            status, body = response.status, (await response.text())[:200]
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        why = str(err) or type(err).__name__
        return section([finding("EACS02", Severity.ERROR, f"{url}/healthz cannot be reached ({why}). Check that "
                                "the name resolves here, nginx runs, and the certificate is the site CA's.")],
                       access_url=url)
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    details = {"access_url": url, "status_code": status, "healthz_ms": elapsed_ms}
    if status != 200:
        return section([finding("EACS03", Severity.ERROR, f"{url}/healthz answered {status} ({body.strip()!r}). "
                                "Read the console's journal: appliance-installer logs appliance-console.")], **details)
    if body.strip() != "OK":
        return section([finding("EACS04", Severity.WARNING, f"{url}/healthz answered 200 but not 'OK' "
                                f"({body.strip()!r}): another server answers at the access URL. "
                                "Point it at this appliance.")],
                       **details)
    return section(**details)
