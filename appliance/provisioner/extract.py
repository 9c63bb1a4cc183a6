"""Read what a template declares (from an import's plan) and what a build left (from its state).

Import: parameters come from the appliance_parameter data sources terraform read while planning;
agents and apps from the planned resources, apps tied to agents through the configuration's
references (ids are unknown before apply). Build: resources, agents with their tokens, apps and
metadata come from the raw state file, where sensitive values are in the clear.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

PARAMETER = "appliance_parameter"
AGENT = "appliance_agent"
APP = "appliance_app"
METADATA = "appliance_metadata"
CONTAINER = "appliance_podman_container"  # its `image` must be in the internal registry (issue 13)
_META_TYPES = (AGENT, APP, METADATA)
# The provider's defaults (appliance/provider/agent.py), for states written before it had the attributes.
CONNECTION_TIMEOUT = 120
STARTUP_SCRIPT_TIMEOUT = 300


def _module_resources(module: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    if not module:
        return
    yield from module.get("resources", [])
    for child in module.get("child_modules", []):
        yield from _module_resources(child)


def _plan_resources(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Resources and data sources from planned_values and prior_state, one entry per address."""
    seen: dict[str, dict[str, Any]] = {}
    for section in (plan.get("prior_state", {}).get("values", {}), plan.get("planned_values", {})):
        for resource in _module_resources(section.get("root_module")):
            seen.setdefault(resource["address"], resource)
    return list(seen.values())


def _first(value: Any) -> dict[str, Any]:
    """Nested blocks arrive as a list of one object, or as an object: take the object."""
    if isinstance(value, list):
        return value[0] if value and isinstance(value[0], dict) else {}
    return value if isinstance(value, dict) else {}


def _parameter(values: dict[str, Any]) -> dict[str, Any]:
    validation = _first(values.get("validation"))
    default = values.get("default")
    return {
        "name": values.get("name", ""),
        "display_name": values.get("display_name") or "",
        "description": values.get("description") or "",
        "type": values.get("type") or "string",
        "default": default,
        "mutable": bool(values.get("mutable")),
        "required": default is None,
        "icon": values.get("icon") or "",
        "order": values.get("order") or 0,
        "options": [{"name": o.get("name", ""), "value": o.get("value", ""), "description": o.get("description") or ""}
                    for o in values.get("option") or []],
        "validation": {k: validation.get(k) for k in ("min", "max", "regex", "error") if validation.get(k) is not None},
    }


def _config_references(plan: dict[str, Any]) -> dict[str, list[str]]:
    """address -> addresses its agent_id expression refers to, from the root module's configuration."""
    refs: dict[str, list[str]] = {}
    for resource in plan.get("configuration", {}).get("root_module", {}).get("resources", []):
        expression = resource.get("expressions", {}).get("agent_id", {})
        refs[resource["address"]] = expression.get("references", [])
    return refs


def template_summary(plan: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(parameters, agents with their apps) declared by a template, from `terraform show -json PLAN`."""
    resources = _plan_resources(plan)
    parameters = [_parameter(r.get("values") or {}) for r in resources
                  if r.get("mode") == "data" and r.get("type") == PARAMETER]
    parameters.sort(key=lambda p: (p["order"], p["name"]))
    agents: dict[str, dict[str, Any]] = {}
    for r in resources:
        if r.get("mode") == "managed" and r.get("type") == AGENT:
            base = r["address"].split("[")[0]
            values = r.get("values") or {}
            agents.setdefault(base, {"name": r["name"], "os": values.get("os", ""), "arch": values.get("arch", ""),
                                     "apps": []})
    references = _config_references(plan)
    for r in resources:
        if r.get("mode") == "managed" and r.get("type") == APP:
            values = r.get("values") or {}
            owner = next((ref for ref in references.get(r["address"].split("[")[0], []) if ref in agents), None)
            if owner is not None and not any(a["slug"] == values.get("slug") for a in agents[owner]["apps"]):
                agents[owner]["apps"].append(_app(values))
    return parameters, list(agents.values())


def template_images(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(address, image) of every planned container; an image unknown until apply is not listed."""
    return [(r["address"], r["values"]["image"]) for r in _plan_resources(plan)
            if r.get("mode") == "managed" and r.get("type") == CONTAINER
            and isinstance((r.get("values") or {}).get("image"), str)]


def _app(values: dict[str, Any]) -> dict[str, Any]:
    return {"slug": values.get("slug", ""), "display_name": values.get("display_name") or "",
            "url": values.get("url") or "", "command": values.get("command") or "",
            "share": values.get("share") or "owner", "healthcheck": _first(values.get("healthcheck"))}


@dataclass
class Agent:
    terraform_id: str
    name: str
    os: str
    arch: str
    directory: str
    startup_script: str
    env: dict[str, str]
    hashed_token: bytes
    apps: list[dict[str, Any]] = field(default_factory=list)
    connection_timeout_seconds: int = CONNECTION_TIMEOUT
    startup_script_timeout_seconds: int = STARTUP_SCRIPT_TIMEOUT
    troubleshooting_url: str = ""
    metadata: list[dict[str, Any]] = field(default_factory=list)  # {key, display_name, script, interval, timeout}


@dataclass
class StateResource:
    address: str
    type: str
    name: str
    daily_cost: int = 0
    metadata: list[dict[str, Any]] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)


def _instances(state: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for resource in state.get("resources", []):
        if resource.get("mode") != "managed":
            continue
        prefix = f"{resource['module']}." if resource.get("module") else ""
        for instance in resource.get("instances", []):
            key = instance.get("index_key")
            suffix = "" if key is None else f"[{json.dumps(key)}]"
            yield f"{prefix}{resource['type']}.{resource['name']}{suffix}", resource, instance.get("attributes") or {}


def _seconds(value: Any, default: int) -> int:
    return default if value is None else max(0, int(value))


def _agent_metadata(block: dict[str, Any]) -> dict[str, Any]:
    interval = max(1, int(block.get("interval") or 1))
    key = str(block.get("key") or "")
    return {"key": key, "display_name": str(block.get("display_name") or key),
            "script": str(block.get("script") or ""), "interval": interval,
            "timeout": _seconds(block.get("timeout"), interval)}


def _agent(resource: dict[str, Any], attrs: dict[str, Any]) -> Agent:
    token = str(attrs.get("token") or "")
    return Agent(str(attrs.get("id") or ""), resource["name"], attrs.get("os") or "", attrs.get("arch") or "",
                 attrs.get("dir") or "", attrs.get("startup_script") or "", dict(attrs.get("env") or {}),
                 hashlib.sha256(token.encode()).digest(),
                 connection_timeout_seconds=_seconds(attrs.get("connection_timeout"), CONNECTION_TIMEOUT),
                 startup_script_timeout_seconds=_seconds(attrs.get("startup_script_timeout"), STARTUP_SCRIPT_TIMEOUT),
                 troubleshooting_url=str(attrs.get("troubleshooting_url") or ""),
                 metadata=[_agent_metadata(m) for m in attrs.get("metadata") or [] if isinstance(m, dict)])


def _owner_of(agent: Agent, token: str, resources: list[tuple[StateResource, str]]) -> StateResource | None:
    """The resource that carries the agent (its attributes mention the agent's id or token)."""
    for resource, text in resources:
        if agent.terraform_id in text or (token and token in text):
            return resource
    return None


def build_resources(state_bytes: bytes) -> list[StateResource]:
    """Resources, agents (token hashed), apps and metadata left by a build, from its raw state file."""
    state = json.loads(state_bytes) if state_bytes.strip() else {}
    plain: list[tuple[StateResource, str]] = []
    ids: dict[str, StateResource] = {}
    agents: list[tuple[Agent, str, StateResource]] = []
    apps, metadata = [], []
    for address, resource, attrs in _instances(state):
        if resource["type"] == AGENT:
            agent = _agent(resource, attrs)
            agents.append((agent, str(attrs.get("token") or ""),
                           StateResource(address, resource["type"], resource["name"])))
        elif resource["type"] == APP:
            apps.append(attrs)
        elif resource["type"] == METADATA:
            metadata.append(attrs)
        else:
            entry = StateResource(address, resource["type"], resource["name"])
            plain.append((entry, json.dumps(attrs, sort_keys=True)))
            if attrs.get("id"):
                ids[str(attrs["id"])] = entry
    result = [entry for entry, _ in plain]
    for agent, token, own in agents:
        holder = _owner_of(agent, token, plain)
        if holder is None:
            holder = own
            result.append(own)
            ids.setdefault(agent.terraform_id, own)
        holder.agents.append(agent)
        agent.apps = [_app(a) for a in apps if str(a.get("agent_id")) == agent.terraform_id]
    for attrs in metadata:
        target = ids.get(str(attrs.get("resource_id")))
        if target is not None:
            target.daily_cost += int(attrs.get("daily_cost") or 0)
            target.metadata.extend({"key": i.get("key", ""), "value": i.get("value") or "",
                                    "sensitive": bool(i.get("sensitive"))} for i in attrs.get("item") or [])
    return result


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _at(value: Any, path: list[dict[str, Any]]) -> Any:
    """The value a state's sensitive path points to (steps get_attr and index), or None."""
    for step in path:
        key = step.get("value")
        if isinstance(key, dict):  # an index step: {"value": <key>, "type": "string" | "number"}
            key = key.get("value")
        if isinstance(value, dict) and value.keys() == {"value", "type"}:  # a dynamic value, stored with its type
            value = value["value"]
        if isinstance(value, dict) and isinstance(key, str):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int | float) and 0 <= int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def sensitive_values(state_bytes: bytes) -> list[str]:
    """Agent tokens, sensitive attributes and sensitive outputs of a state file: what logs must never show."""
    try:
        state = json.loads(state_bytes) if state_bytes.strip() else {}
    except ValueError:
        return []
    found: list[str] = []
    for resource in state.get("resources", []):
        for instance in resource.get("instances", []):
            attrs = instance.get("attributes") or {}
            if resource.get("type") == AGENT and attrs.get("token"):
                found.append(str(attrs["token"]))
            for path in instance.get("sensitive_attributes") or []:
                found.extend(_strings(_at(attrs, path if isinstance(path, list) else [])))
    found.extend(s for output in (state.get("outputs") or {}).values() if output.get("sensitive")
                 for s in _strings(output.get("value")))
    return found
