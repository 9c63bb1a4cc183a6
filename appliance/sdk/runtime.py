"""The runtime service on the wire: what the provider asks of podman, and what it gets back.

The runtime service owns rootful podman and is the only thing that talks to it. Terraform (in its
sandbox) reaches it through one unix socket, `RUNTIME_SOCKET_IN_SANDBOX`, with the build's
credential as `Authorization: Bearer`. Every request names an object by the template's own name;
the service keeps each workspace's objects apart (labels, and podman names it derives), so a
template never learns or touches another workspace's.

    PUT    /v1/volumes/{name}       VolumeSpec     -> Volume      (idempotent: an existing one is kept)
    GET    /v1/volumes/{name}                      -> Volume      (404 when gone)
    DELETE /v1/volumes/{name}                      -> 204         (absent is fine)
    PUT    /v1/containers/{name}    ContainerSpec  -> Container   (replaces, pulls, starts, waits)
    GET    /v1/containers/{name}                   -> Container   (404 when gone)
    DELETE /v1/containers/{name}                   -> 204         (absent is fine)

Errors are `{"message", "detail"}` like the API's; a policy refusal is 403 and names its rule.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from appliance.sdk.base import Body, Line, Text

RUNTIME_SOCKET_IN_SANDBOX = "/run/appliance-runtime.sock"
# Environment the provisioner gives terraform for a workspace build (never for an import).
SOCKET_ENV = "APPLIANCE_RUNTIME_SOCKET"
TOKEN_ENV = "APPLIANCE_RUNTIME_TOKEN"  # noqa: S105 -- the variable's name, not a secret
REGISTRY_ENV = "APPLIANCE_REGISTRY"     # host:port of the internal registry: the only place images come from
CREDENTIAL_AUDIENCE = "appliance-runtime"
# Labels the service puts on everything it creates; `appliance doctor` finds orphans by them.
LABEL_WORKSPACE = "dev.appliance.workspace-id"
LABEL_OWNER = "dev.appliance.owner-id"
LABEL_BUILD = "dev.appliance.build-id"
LABEL_NAME = "dev.appliance.name"

# A template's name for a volume or container: short, DNS-label-like, so derived podman names stay valid.
ObjectName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
OBJECT_NAME_HINT = ("Use 1 to 63 characters: lowercase letters, digits, '.', '_' or '-', "
                    "starting with a letter or digit.")
RestartPolicy = Literal["no", "on-failure", "always", "unless-stopped"]


class VolumeSpec(Body):
    labels: dict[Line, Line] = Field(default_factory=dict, max_length=32,
                                     description="Extra labels; the service's own (dev.appliance.*) win.")


class Volume(BaseModel):
    name: str = Field(description="The template's name for it.")
    podman_name: str = Field(description="The name podman knows it by (derived from the workspace).")
    workspace_id: str
    created_at: str


class Mount(Body):
    """A mount into the container. Only the workspace's own volumes pass the policy; `host_path` never does."""

    volume: ObjectName | None = Field(default=None, description="The template's name of a volume.")
    host_path: Line | None = Field(default=None, max_length=4096,
                                   description="Refused by policy (rule no-host-mounts); here so it can be named.")
    path: Line = Field(max_length=4096, description="Where it appears in the container (absolute).")
    read_only: bool = False


class ContainerSpec(Body):
    image: Line = Field(max_length=1024, description="REGISTRY/REPOSITORY[:TAG|@DIGEST]; the internal registry only.")
    # Text, not Line: `sh -c SCRIPT` carries a multi-line script (the agent's init script is the entrypoint).
    command: list[Text] = Field(default_factory=list, max_length=256)
    entrypoint: list[Text] | None = Field(default=None, max_length=256)
    env: dict[Line, str] = Field(default_factory=dict, max_length=512)
    mounts: list[Mount] = Field(default_factory=list, max_length=32)
    cpus: float = Field(gt=0, le=1024, description="CPU limit (required by policy).")
    memory_mb: int = Field(gt=0, le=4 * 1024 * 1024, description="Memory limit in MiB (required by policy).")
    restart: RestartPolicy = "unless-stopped"
    hostname: Line | None = Field(default=None, max_length=63)
    user: Line | None = Field(default=None, max_length=64)
    labels: dict[Line, Line] = Field(default_factory=dict, max_length=32)
    # Asked-for privileges: the policy refuses each by name; present so a hostile template is told why.
    privileged: bool = False
    cap_add: list[Line] = Field(default_factory=list, max_length=64)
    network_mode: Line | None = Field(default=None, max_length=64, description="'host' is refused.")
    pid_mode: Line | None = Field(default=None, max_length=64, description="'host' is refused.")


class Container(BaseModel):
    name: str
    podman_name: str
    podman_id: str
    workspace_id: str
    image: str
    image_digest: str
    state: str = Field(description="podman's state: running, exited, ...")
    created_at: str


class RuntimeRefusal(BaseModel):
    message: str
    detail: str = ""
    rule: str | None = Field(default=None, description="The policy rule that refused the request, if one did.")
