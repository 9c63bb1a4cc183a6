"""The control plane's side of a job: hand a daemon everything it needs, then record what it produced.

Both in-process daemons and external ones (through /api/v2/provisionerd) go through these
functions, so a job is run, saved and finished the same way wherever terraform runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from appliance.auth.ssh_keys import ensure_key
from appliance.auth.users import find_user
from appliance.config import ServerConfig
from appliance.db.database import Connection, Row
from appliance.pki.ca import CertificateAuthority
from appliance.provisioner import extract, jobs, redaction
from appliance.registry import tokens
from appliance.registry.references import is_internal
from appliance.registry.site import internal_hosts
from appliance.runtime import credentials
from appliance.runtime.credentials import BuildCredential
from appliance.sdk.provisionerd import MAX_LOG_LINE_CHARS, JobSpec
from appliance.sdk.redaction import redact_json, usable
from appliance.sdk.runtime import REGISTRY_ENV, RUNTIME_SOCKET_IN_SANDBOX, SOCKET_ENV, TOKEN_ENV
from appliance.templates import images as template_images
from appliance.templates import service as templates
from appliance.workspaces import resources as workspace_resources
from appliance.workspaces import service as workspaces

# The agent's init script: fetch the agent (appliance/agent, served at /bin/) and run it. It runs as
# whatever user the workspace's image has (not root), so it writes the CA bundle it carries where
# that user can, and trusts only it; a workspace needs no CA baked into its image.
AGENT_SCRIPT = """#!/bin/sh
# Appliance agent bootstrap: trust the appliance's CA, fetch the agent from the control plane and run it.
set -eu
trap 'exit 143' TERM INT  # as PID 1 of a container, sh would ignore SIGTERM and stop only when killed
say() { echo "appliance-agent-init: $*" >&2; }
CA_FILE="${TMPDIR:-/tmp}/appliance-ca.pem"
cat > "$CA_FILE" <<'APPLIANCE_CA_BUNDLE'
%(ca_bundle)sAPPLIANCE_CA_BUNDLE
export SSL_CERT_FILE="$CA_FILE" CURL_CA_BUNDLE="$CA_FILE"
export APPLIANCE_AGENT_URL="${ACCESS_URL}"
BINARY_URL="${ACCESS_URL}bin/appliance-agent-linux-amd64"
BINARY="${TMPDIR:-/tmp}/appliance-agent"
say "downloading the agent from $BINARY_URL"
# Backoff 1 s doubling to 30 s, each wait a random 50-100%% of it: agents restarted together spread out.
delay=1
until curl -fsSL --cacert "$CA_FILE" -o "$BINARY.partial" "$BINARY_URL"; do
  ms=$(( delay * 500 + $(od -An -N2 -tu2 /dev/urandom) %% (delay * 500 + 1) ))
  wait_for="$((ms / 1000)).$(printf %%03d $((ms %% 1000)))"
  say "download failed; retrying in $wait_for s"
  sleep "$wait_for" & wait $!
  delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))
done
chmod +x "$BINARY.partial"
mv -f "$BINARY.partial" "$BINARY"  # a partial download is never what runs
say "starting the agent"
exec "$BINARY"
"""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSite:
    """What a job learns of the appliance beyond the database: its URL, its registry, and its CA.

    The CA's bundle goes into the agent's init script; its token key signs each build's runtime
    credential. Without a CA (a test server without one) builds get no runtime credential.
    """

    access_url: str
    registry: str  # host:port templates name images by (appliance_workspace.registry)
    ca: CertificateAuthority | None = None
    registry_hosts: frozenset[str] = frozenset()  # every host:port that names the internal registry

    @classmethod
    def for_config(cls, config: ServerConfig, ca: CertificateAuthority | None) -> JobSite:
        return cls(config.access_url, str(config.registry_address), ca, internal_hosts(config))

    def agent_script(self) -> str:
        bundle = self.ca.trust_bundle_pem().decode() if self.ca is not None and self.ca.is_initialised() else ""
        return AGENT_SCRIPT % {"ca_bundle": bundle}

    def runtime_credential(self, build: BuildCredential, lifetime: timedelta) -> str | None:
        """A credential for the runtime service, valid as long as the job may run; None without a CA."""
        if self.ca is None or not self.ca.is_initialised():
            return None
        try:
            signer = tokens.load_signer(self.ca)
        except tokens.RegistryUnavailable as err:
            # Builds still run: only templates with podman resources need the credential, and they fail naming it.
            log.warning("runtime_credential_unavailable", extra={"reason": err.message, "hint": err.detail})
            return None
        return credentials.issue(signer.key, signer.chain, build, datetime.now(UTC), lifetime)


def parameter_env(name: str) -> str:
    return "APPLIANCE_PARAMETER_" + hashlib.sha256(name.encode()).hexdigest()


def _source(conn: Connection, file_hash: str) -> bytes:
    row = conn.execute("SELECT data FROM files WHERE hash = %s", (file_hash,)).fetchone()
    assert row is not None
    return bytes(row["data"])


def _common_env(site: JobSite, template: templates.Template, version: templates.Version) -> dict[str, str]:
    script = site.agent_script()
    return {"APPLIANCE_ACCESS_URL": site.access_url.rstrip("/") + "/", REGISTRY_ENV: site.registry,
            "APPLIANCE_WORKSPACE_TEMPLATE_ID": str(template.id),
            "APPLIANCE_WORKSPACE_TEMPLATE_NAME": template.name,
            "APPLIANCE_WORKSPACE_TEMPLATE_VERSION": version.name,
            "APPLIANCE_AGENT_SCRIPT_linux_amd64": script,
            "APPLIANCE_AGENT_SCRIPT_linux_arm64": script.replace("linux-amd64", "linux-arm64")}


def _import_spec(conn: Connection, row: Row, site: JobSite) -> JobSpec:
    version = templates.version_for_job(conn, row["id"])
    assert version is not None
    template = templates.find_template(conn, str(version.template_id))
    env = {**_common_env(site, template, version), "APPLIANCE_WORKSPACE_TRANSITION": "start"}
    return JobSpec(id=row["id"], type=jobs.JobType.IMPORT, timeout_seconds=row["timeout_seconds"],
                   transition="start", env=env, source=_source(conn, version.file_hash), state=None)


def _build_spec(conn: Connection, row: Row, site: JobSite) -> JobSpec:
    build = workspaces.build_for_job(conn, row["id"])
    assert build is not None
    ws = conn.execute("SELECT * FROM workspaces WHERE id = %s", (build.workspace_id,)).fetchone()
    assert ws is not None
    version = templates.version_by_id(conn, build.template_version_id)
    template = templates.find_template(conn, str(version.template_id))
    owner = find_user(conn, str(ws["owner_id"]))
    assert owner is not None
    env = {**_common_env(site, template, version),
           "APPLIANCE_WORKSPACE_ID": str(ws["id"]), "APPLIANCE_WORKSPACE_NAME": ws["name"],
           "APPLIANCE_WORKSPACE_TRANSITION": build.transition, "APPLIANCE_WORKSPACE_BUILD_ID": str(build.id),
           "APPLIANCE_WORKSPACE_OWNER_ID": str(owner.id), "APPLIANCE_WORKSPACE_OWNER_NAME": owner.username,
           "APPLIANCE_WORKSPACE_OWNER_EMAIL": owner.email,
           "APPLIANCE_WORKSPACE_OWNER_GROUPS": json.dumps(sorted(owner.roles)),
           "APPLIANCE_WORKSPACE_OWNER_SSH_PUBLIC_KEY": ensure_key(conn, owner.id).public_key}
    env.update({parameter_env(name): value for name, value in build.parameters.items()})
    state = workspaces.previous_state(conn, build)
    hidden = extract.sensitive_values(state or b"")
    # Only builds reach the runtime service, and only for their own workspace, while the job may run.
    token = site.runtime_credential(BuildCredential(str(ws["id"]), str(owner.id), str(build.id)),
                                    timedelta(seconds=row["timeout_seconds"]))
    if token is not None:
        env.update({TOKEN_ENV: token, SOCKET_ENV: RUNTIME_SOCKET_IN_SANDBOX})
        hidden.append(token)
    return JobSpec(id=row["id"], type=jobs.JobType.BUILD, timeout_seconds=row["timeout_seconds"],
                   transition=build.transition, env=env, source=_source(conn, version.file_hash), state=state,
                   secrets=hidden)


def acquire(conn: Connection, daemon_id: UUID, tags: dict[str, str], site: JobSite,
            heartbeat_timeout: timedelta) -> JobSpec | None:
    """Claim the next job for a daemon (after failing jobs whose daemons went silent)."""
    jobs.reap(conn, heartbeat_timeout)
    row = jobs.acquire(conn, daemon_id, tags)
    if row is None:
        return None
    jobs.append_logs(conn, row["id"], [("Setting up", "info", "Job claimed by a provisioner daemon.")])
    spec = (_import_spec(conn, row, site) if row["type"] == jobs.JobType.IMPORT.value
            else _build_spec(conn, row, site))
    return spec.model_copy(update={"heartbeat_seconds": max(0.5, heartbeat_timeout.total_seconds() / 4)})


def append_logs(conn: Connection, job_id: UUID, lines: Sequence[tuple[str, str, str]], site: Iterable[str]) -> None:
    """Store a daemon's (stage, level, output) lines with every secret the appliance knows hidden.

    Cut to size after redaction: a cut first could leave half a secret that no longer matches.
    """
    hidden = redaction.redact_lines(conn, job_id, lines, site)
    jobs.append_logs(conn, job_id, [(stage[:64], level, output[:MAX_LOG_LINE_CHARS])
                                    for stage, level, output in hidden])


def save_state(conn: Connection, job_id: UUID, daemon_id: UUID, chunks: Iterable[bytes | memoryview]) -> bool:
    """Keep the state terraform has written so far; False (nothing read) if the job is no longer this daemon's."""
    if not jobs.is_running_on(conn, job_id, daemon_id) or workspaces.build_for_job(conn, job_id) is None:
        return False
    workspaces.save_state(conn, job_id, chunks)
    redaction.scrub_stored(conn, job_id)
    return True


def foreign_image(images: list[tuple[str, str]], registry_hosts: frozenset[str]) -> str | None:
    """Why an import must fail: the first container whose image is not in the internal registry."""
    for address, image in images:
        if not is_internal(image, registry_hosts):
            internal = min(registry_hosts) if registry_hosts else "the internal registry"
            return (f"{address} uses image {image!r}, which is not in the internal registry ({internal}). "
                    f"Import it with 'appliance images import PATH --name REPO:TAG' and write it as "
                    f"{internal}/REPO:TAG.")
    return None


def complete_import(conn: Connection, job_id: UUID, daemon_id: UUID, plan: dict[str, Any],
                    site: Iterable[str], registry_hosts: frozenset[str]) -> bool:
    """Record an import's plan; False if the job is no longer this daemon's to end.

    A container whose image names another registry fails the version: workspaces pull only from ours.
    """
    version = templates.version_for_job(conn, job_id)
    images = extract.template_images(plan)
    refusal = foreign_image(images, registry_hosts)
    if version is None or jobs.finish(conn, job_id, daemon_id, refusal or "") is None:
        return False
    if refusal is not None:
        return True
    template_images.record(conn, version.id, images)
    # Members read a version's parameters and agents: what the plan shows of a site secret stays hidden.
    parameters, agents = extract.template_summary(plan)
    hidden = usable(site)
    templates.complete_import(conn, version, redact_json(parameters, hidden), redact_json(agents, hidden))
    return True


def complete_build(conn: Connection, job_id: UUID, daemon_id: UUID) -> bool:
    """End a build with the state its daemon saved last; False if the job is no longer this daemon's."""
    build = workspaces.build_for_job(conn, job_id)
    if build is None or jobs.finish(conn, job_id, daemon_id) is None:
        return False
    workspace_resources.store(conn, job_id, extract.build_resources(workspaces.job_state(conn, job_id) or b""))
    if build.transition == "delete":
        workspaces.mark_deleted(conn, build)
    return True


def fail(conn: Connection, job_id: UUID, daemon_id: UUID, error: str, site: Iterable[str]) -> bool:
    """End a job as failed, listing what the state saved before it failed left standing."""
    error = redaction.redact_text(conn, job_id, error, site) or "The job failed."
    if jobs.finish(conn, job_id, daemon_id, error) is None:
        return False
    state = workspaces.job_state(conn, job_id) if workspaces.build_for_job(conn, job_id) else None
    if state:
        workspace_resources.store(conn, job_id, extract.build_resources(state))
    return True
