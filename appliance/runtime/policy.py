"""The runtime policy: what a workspace build may ask of podman, each refusal named by its rule (docs/adr/0019).

Pure functions over the wire shapes; the service (service.py) turns a refusal into a 403 and podman.py
adds what every container always gets (labels, a pids limit, the access URL's host entries).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from appliance.sdk.runtime import ContainerSpec, Mount

# Rule names: what a refusal carries in `rule`, what templates and docs refer to.
INTERNAL_REGISTRY_ONLY = "internal-registry-only"
NO_PRIVILEGED = "no-privileged"
NO_HOST_MOUNTS = "no-host-mounts"
OWN_VOLUMES_ONLY = "own-volumes-only"
NO_HOST_NETWORK = "no-host-network"
NO_HOST_PID = "no-host-pid"
CAPABILITIES = "capabilities"
LIMITS_REQUIRED = "limits-required"

# podman 4's default capability set: what every container has already. Naming one in cap_add is a no-op.
PODMAN_DEFAULT_CAPABILITIES = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP",
    "SETUID", "SYS_CHROOT",
})
# Beyond podman's defaults, only what Docker grants by default and a development box misses without it:
# AUDIT_WRITE (sshd, su and login write audit records), NET_RAW (ping, traceroute), MKNOD (package
# post-install scripts). None of them reaches outside the container's namespaces. Never SYS_ADMIN,
# NET_ADMIN, SYS_PTRACE, SYS_MODULE, DAC_READ_SEARCH, BPF...: each is a known path out of a container.
EXTRA_CAPABILITIES = frozenset({"AUDIT_WRITE", "NET_RAW", "MKNOD"})
ALLOWED_CAPABILITIES = PODMAN_DEFAULT_CAPABILITIES | EXTRA_CAPABILITIES
# The only network and PID modes a container may ask for: podman's own bridge and a private namespace.
PRIVATE_NETWORK_MODES = frozenset({"bridge", "default"})
PRIVATE_PID_MODES = frozenset({"private"})
_VOLUME_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
# A mount's path in the container, as podman's --mount syntax can carry it: absolute, no ',' or ':'.
_MOUNT_PATH = re.compile(r"/[^,:\x00]*")


class PolicyRefusal(Exception):
    """A request the policy refuses: the rule it broke, what was asked, and what to do instead."""

    def __init__(self, rule: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.hint = hint


def host_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)


@dataclass(frozen=True)
class Policy:
    registry: str  # host:port of the internal registry: the only host an image may name
    # One container's maxima (config runtime_max_cpus, runtime_max_memory_mb): by default the whole host.
    max_cpus: float = field(default_factory=lambda: float(os.cpu_count() or 1))
    max_memory_mb: int = field(default_factory=host_memory_mb)
    pids_limit: int = 4096  # a fork bomb in one workspace must not exhaust the host's pids


def check_container(spec: ContainerSpec, policy: Policy) -> None:
    """Raise PolicyRefusal naming the first rule `spec` breaks; return when it breaks none."""
    _check_image(spec.image, policy.registry)
    if spec.privileged:
        raise PolicyRefusal(NO_PRIVILEGED, "Privileged containers are not allowed.",
                            "Remove privileged = true; a workspace runs with podman's default capabilities.")
    for index, mount in enumerate(spec.mounts):
        _check_mount(index, mount)
    if spec.network_mode is not None and spec.network_mode not in PRIVATE_NETWORK_MODES:
        raise PolicyRefusal(NO_HOST_NETWORK, f"Network mode {spec.network_mode!r} is not allowed.",
                            "Leave network_mode unset: containers use podman's bridge and reach the "
                            "appliance at host.containers.internal.")
    if spec.pid_mode is not None and spec.pid_mode not in PRIVATE_PID_MODES:
        raise PolicyRefusal(NO_HOST_PID, f"PID mode {spec.pid_mode!r} is not allowed.",
                            "Leave pid_mode unset: each container has its own PID namespace.")
    _check_capabilities(spec.cap_add)
    _check_limits(spec, policy)


def normalize_capability(name: str) -> str:
    """'cap_net_raw', 'NET_RAW' and 'CAP_NET_RAW' all name NET_RAW."""
    upper = name.strip().upper()
    return upper.removeprefix("CAP_")


def image_host(image: str) -> str | None:
    """The registry host:port an image reference names, or None for a short name (docker.io's default)."""
    first, slash, _ = image.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return None
    return first.lower()


def _check_image(image: str, registry: str) -> None:
    host = image_host(image)
    if host != registry.lower():
        named = f"registry {host!r}" if host else "no registry (a short name resolves to a public registry)"
        raise PolicyRefusal(INTERNAL_REGISTRY_ONLY, f"Image {image!r} names {named}.",
                            f"Use an image from the internal registry: {registry}/REPOSITORY:TAG "
                            "(import it with 'appliance images import').")


def _check_mount(index: int, mount: Mount) -> None:
    if mount.host_path is not None:
        raise PolicyRefusal(NO_HOST_MOUNTS, f"Mount {index} asks for host path {mount.host_path!r}.",
                            "Mount an appliance_podman_volume of this workspace instead.")
    if mount.volume is None or not _VOLUME_NAME.fullmatch(mount.volume):
        raise PolicyRefusal(OWN_VOLUMES_ONLY, f"Mount {index} names no volume of this workspace.",
                            "Name a volume this template declares (1 to 63 lowercase letters, digits, '.', "
                            "'_' or '-'); volumes of other workspaces cannot be named.")


def _check_capabilities(requested: list[str]) -> None:
    refused = sorted({normalize_capability(name) for name in requested} - ALLOWED_CAPABILITIES)
    if refused:
        raise PolicyRefusal(CAPABILITIES, f"Capabilities {', '.join(refused)} are not allowed.",
                            f"cap_add may name only {', '.join(sorted(EXTRA_CAPABILITIES))} (and podman's "
                            "defaults, which every container has).")


def _check_limits(spec: ContainerSpec, policy: Policy) -> None:
    if spec.cpus > policy.max_cpus:
        raise PolicyRefusal(LIMITS_REQUIRED, f"cpus = {spec.cpus:g} is above this appliance's limit "
                            f"({policy.max_cpus:g}).", f"Ask for at most {policy.max_cpus:g} CPUs.")
    if spec.memory_mb > policy.max_memory_mb:
        raise PolicyRefusal(LIMITS_REQUIRED, f"memory_mb = {spec.memory_mb} is above this appliance's limit "
                            f"({policy.max_memory_mb} MiB).", f"Ask for at most {policy.max_memory_mb} MiB.")


def mount_path_problem(path: str) -> str | None:
    """Why a mount's container path cannot be passed to podman, or None (absolute, no ',' or ':')."""
    if not _MOUNT_PATH.fullmatch(path):
        return "must be an absolute path without ',' or ':'"
    if any(part == ".." for part in path.split("/")):
        return "must not hold '..'"
    return None
