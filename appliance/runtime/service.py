"""The runtime service: an aiohttp server on a unix socket, authorizing each request by its build credential.

Routes are in appliance/sdk/runtime.py. Errors are {"message", "detail", "rule"}: 400 for a body that
is not JSON or holds what no field may (NUL, huge numbers), 401 without a valid credential, 403 for a
policy refusal (naming its rule), 404, 409, 422 naming the field, 502/503 when podman fails or is
missing. Anyone who can reach the socket may ask; only a credential decides what (docs/adr/0019).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from cryptography import x509
from pydantic import BaseModel, ValidationError

from appliance.config import ServerConfig
from appliance.errors import OperatorError
from appliance.pki.layout import PkiLayout
from appliance.runtime.credentials import BuildCredential, CredentialRefused, load_roots, verify
from appliance.runtime.forwarder import Forwarder, Target, add_host_arguments, gateway_address
from appliance.runtime.podman import PodmanFailed, PodmanMissing, RegistryAccess, find_podman, install_ca
from appliance.runtime.policy import LIMITS_REQUIRED, Policy, PolicyRefusal
from appliance.runtime.workspaces import Refusal, Workspaces
from appliance.sdk.base import unstorable_value
from appliance.sdk.runtime import OBJECT_NAME_HINT, ContainerSpec, RuntimeRefusal, VolumeSpec

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
# A workspace id goes into podman names: it must stay a plain name whatever a (valid) credential says.
_WORKSPACE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# The request's verified credential, for its log line: set by the handler, read by the middleware (one task).
_BUILD: ContextVar[BuildCredential | None] = ContextVar("runtime_build", default=None)
_WORKSPACES_KEY = web.AppKey("workspaces", Workspaces)
_ROOTS_KEY = web.AppKey("roots", list[x509.Certificate])
_Model = TypeVar("_Model", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RuntimeSettings:
    socket: Path
    state_dir: Path          # containers.conf, the registry's CA for podman, short-lived secret files
    access_url: str          # what the forwarder makes reachable from containers
    registry_address: str    # host:port: the only registry images may come from
    ca_root: Path            # PEM: what credentials (and the registry's TLS) must chain to
    registry_is_tls: bool = True  # plain http only on loopback (tests against a bare registry)
    settle_seconds: float = 2.0
    policy_limits: dict[str, Any] = field(default_factory=dict)  # Policy's max_cpus, max_memory_mb, pids_limit
    forwarder: bool = True   # False: the access URL's port already listens on every address (the installed nginx)

    @classmethod
    def from_config(cls, config: ServerConfig) -> RuntimeSettings:
        limits = {key: value for key, value in (("max_cpus", config.runtime_max_cpus),
                                                 ("max_memory_mb", config.runtime_max_memory_mb)) if value is not None}
        return cls(config.runtime_socket, config.runtime_socket.parent, config.access_url,
                   str(config.registry_address), PkiLayout(config.pki_dir).root_cert, policy_limits=limits,
                   forwarder=config.runtime_forwarder)

    def policy(self) -> Policy:
        return Policy(self.registry_address, **self.policy_limits)

    def registry_access(self, cert_dir: Path) -> RegistryAccess:
        host = self.registry_address.rpartition(":")[0].strip("[]")
        if not self.registry_is_tls and not _is_loopback(host):
            raise OperatorError(f"The registry {self.registry_address} is not on loopback, yet plain http was asked.",
                                "Serve the registry over TLS from the internal CA.")
        return RegistryAccess(self.registry_address, self.registry_is_tls, cert_dir)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _error(status: int, message: str, detail: str = "", rule: str | None = None) -> web.Response:
    body = RuntimeRefusal(message=message, detail=detail, rule=rule).model_dump_json()
    return web.Response(status=status, text=body, content_type="application/json")


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(status=status, text=model.model_dump_json(), content_type="application/json")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    _BUILD.set(None)
    try:
        response = await handler(request)
    except Refusal as err:
        response = _error(err.status, err.message, err.detail, err.rule)
    except PolicyRefusal as err:
        response = _error(403, err.message, err.hint, err.rule)
    except PodmanMissing as err:
        response = _error(503, err.message, err.hint)
    except PodmanFailed as err:
        response = _error(502, "podman failed.", err.last_lines())
    except web.HTTPException as err:
        response = _error(err.status, err.reason, err.text or "")
    except Exception:  # the last resort: a JSON answer and a logged traceback, never an HTML page
        log.exception("runtime_request_crashed", extra={"path": request.path})
        response = _error(500, "The runtime service failed.", "See its log.")
    build = _BUILD.get()
    log.info("runtime_request", extra={"action": f"{request.method} {request.path}", "result": response.status,
                                       "workspace_id": build.workspace_id if build else None,
                                       "build_id": build.build_id if build else None})
    return response


def _authorize(request: web.Request) -> tuple[BuildCredential, str]:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal("No runtime credential.", "Send the build's credential as 'Authorization: Bearer TOKEN' "
                      "(terraform gets it in APPLIANCE_RUNTIME_TOKEN).", status=401)
    try:
        build = verify(token.strip(), request.app[_ROOTS_KEY], datetime.now(UTC))
    except CredentialRefused as err:
        raise Refusal(f"The runtime credential was refused: {err}.",
                      "Only a workspace build's own credential, while its job runs, is accepted.", status=401) from err
    if not _WORKSPACE_ID.fullmatch(build.workspace_id):
        raise Refusal("The runtime credential names no usable workspace id.", status=401)
    _BUILD.set(build)
    return build, token.strip()


def _object_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not _NAME.fullmatch(name):
        raise Refusal(f"name: {name!r} is not a valid object name.", OBJECT_NAME_HINT)
    return name


async def _body(request: web.Request, model: type[_Model]) -> _Model:
    raw = await request.read()
    try:
        document = json.loads(raw or b"{}")
    except (ValueError, RecursionError) as err:
        raise Refusal("The body is not JSON.", str(err)[:200], status=400) from err
    if (bad := unstorable_value(document, is_strict_text=False)) is not None:
        raise Refusal(f"{bad[0]} {bad[1]}.", "Remove it and send the request again.", status=400)
    try:
        return model.model_validate(document)
    except ValidationError as err:
        raise _validation_refusal(err) from err


def _validation_refusal(err: ValidationError) -> Exception:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    if where in ("cpus", "memory_mb") and first["type"] == "missing":
        return PolicyRefusal(LIMITS_REQUIRED, f"{where} is required: every container needs CPU and memory limits.",
                             "Set cpus and memory_mb on the container.")
    return Refusal(f"{where}: {first['msg']}.", f"{len(err.errors())} problem(s) in the body.")


async def _put_volume(request: web.Request) -> web.Response:
    build, _ = _authorize(request)
    name = _object_name(request)
    spec = await _body(request, VolumeSpec)
    return _json(await request.app[_WORKSPACES_KEY].put_volume(build, name, spec))


async def _get_volume(request: web.Request) -> web.Response:
    build, _ = _authorize(request)
    return _json(await request.app[_WORKSPACES_KEY].get_volume(build, _object_name(request)))


async def _delete_volume(request: web.Request) -> web.Response:
    build, _ = _authorize(request)
    await request.app[_WORKSPACES_KEY].delete_volume(build, _object_name(request))
    return web.Response(status=204)


async def _put_container(request: web.Request) -> web.Response:
    build, token = _authorize(request)
    name = _object_name(request)
    spec = await _body(request, ContainerSpec)
    return _json(await request.app[_WORKSPACES_KEY].put_container(build, token, name, spec))


async def _get_container(request: web.Request) -> web.Response:
    build, _ = _authorize(request)
    return _json(await request.app[_WORKSPACES_KEY].get_container(build, _object_name(request)))


async def _delete_container(request: web.Request) -> web.Response:
    build, _ = _authorize(request)
    await request.app[_WORKSPACES_KEY].delete_container(build, _object_name(request))
    return web.Response(status=204)


def make_app(workspaces: Workspaces, roots: list[x509.Certificate]) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
    app[_WORKSPACES_KEY] = workspaces
    app[_ROOTS_KEY] = roots
    app.router.add_route("PUT", "/v1/volumes/{name}", _put_volume)
    app.router.add_route("GET", "/v1/volumes/{name}", _get_volume)
    app.router.add_route("DELETE", "/v1/volumes/{name}", _delete_volume)
    app.router.add_route("PUT", "/v1/containers/{name}", _put_container)
    app.router.add_route("GET", "/v1/containers/{name}", _get_container)
    app.router.add_route("DELETE", "/v1/containers/{name}", _delete_container)
    return app


class RuntimeService:
    """The service's pieces in one event loop: podman, the forwarder, and the HTTP server on the socket."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self._runner: web.AppRunner | None = None
        self._forwarder: Forwarder | None = None

    async def start(self) -> None:
        settings = self.settings
        podman = find_podman(settings.state_dir)
        try:
            root_pem = settings.ca_root.read_bytes()
            roots = load_roots(root_pem)
        except (OSError, ValueError) as err:
            raise OperatorError(f"Cannot read the internal CA root {settings.ca_root}: {err}.",
                                "Run 'appliance server' once to create the CA, or set pki_dir.") from err
        registry = settings.registry_access(install_ca(settings.state_dir, root_pem))
        target = Target.of_url(settings.access_url)
        try:
            gateway = await gateway_address(podman)
        except (PodmanFailed, ValueError, LookupError) as err:
            raise OperatorError(f"Cannot find podman's bridge network: {err}.",
                                "Check 'podman network inspect podman' works as root.") from err
        if settings.forwarder:
            self._forwarder = Forwarder(target)
            await self._forwarder.start(gateway)
        workspaces = Workspaces(podman, settings.policy(), registry, settings.settle_seconds,
                                add_host_arguments(target, gateway))
        self._runner = web.AppRunner(make_app(workspaces, roots), access_log=None)
        await self._runner.setup()
        try:
            settings.socket.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            settings.socket.unlink(missing_ok=True)
            await web.UnixSite(self._runner, str(settings.socket)).start()
        except OSError as err:
            await self.stop()
            raise OperatorError(f"Cannot listen on the runtime socket {settings.socket}: {err}.",
                                "Set runtime_socket to a shorter path (at most 107 bytes) in a writable "
                                "directory.") from err
        # Any local uid may connect (terraform runs under an arbitrary one): the credential authorizes.
        settings.socket.chmod(0o666)
        log.info("runtime_started", extra={"socket": str(settings.socket), "registry": settings.registry_address,
                                           "gateway": gateway})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._forwarder is not None:
            await self._forwarder.stop()
            self._forwarder = None
        self.settings.socket.unlink(missing_ok=True)


async def serve_forever(settings: RuntimeSettings) -> None:
    """`appliance runtime serve`: run until cancelled (SIGTERM/SIGINT in the CLI)."""
    service = RuntimeService(settings)
    await service.start()
    try:
        await asyncio.Event().wait()
    finally:
        await service.stop()


class EmbeddedRuntime:
    """The service in its own thread and event loop, for `appliance server` in embedded mode."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.service = RuntimeService(settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="appliance-runtime", daemon=True)

    def start(self) -> None:
        """Start and return once the socket listens; raise what start raised (OperatorError) otherwise."""
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.service.start(), self._loop).result(timeout=60)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            raise

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.service.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
