"""Registry token scopes (`repository:NAME:pull,push`): parsed, then cut down to what a subject may do.

A scope a client asks for is a wish, never a grant: each action is kept only when the subject's
roles allow it (pull = read an image, push = update one), so a token never says more than RBAC does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.auth.rbac import Action, Resource, ResourceType, Subject, is_allowed
from appliance.errors import InvalidInput

REPOSITORY = "repository"
PULL, PUSH = "pull", "push"
ANY_ACTION = "*"
# Distribution's repository name grammar: lower-case path components joined by "/".
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
MAX_NAME_LENGTH = 255
# Which RBAC action on an image each registry action needs.
ACTION_NEEDS = {PULL: Action.READ, PUSH: Action.UPDATE}
SCOPE_HINT = "Ask for scopes such as 'repository:team/app:pull,push' (lower-case names, '/' between parts)."


@dataclass(frozen=True)
class Access:
    """One entry of a token's `access` claim: a resource and the actions granted on it."""

    type: str
    name: str
    actions: tuple[str, ...]

    def claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def parse_scope(text: str) -> Access:
    """`type:name:actions`; raise InvalidInput naming the scope when it is not one."""
    kind, _, rest = text.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        raise InvalidInput(f"Invalid scope {text!r}: expected TYPE:NAME:ACTIONS.", SCOPE_HINT, field="scope")
    if kind == REPOSITORY and (len(name) > MAX_NAME_LENGTH or not REPOSITORY_NAME.fullmatch(name)):
        raise InvalidInput(f"Invalid repository name {name!r} in scope {text!r}.", SCOPE_HINT, field="scope")
    return Access(kind, name, tuple(a for a in actions.split(",") if a))


def parse_scopes(values: list[str]) -> list[Access]:
    """Every scope of a request: repeated `scope` parameters, each possibly several separated by spaces."""
    return [parse_scope(item) for value in values for item in value.split()]


def granted_actions(subject: Subject, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The wanted repository actions the subject's roles allow, in a fixed order; '*' means all it may."""
    image = Resource(ResourceType.IMAGE)
    asked = set(ACTION_NEEDS) if ANY_ACTION in wanted else set(wanted)
    return tuple(action for action, needs in ACTION_NEEDS.items()
                 if action in asked and is_allowed(subject, needs, image))


def grant(subject: Subject, requested: list[Access]) -> list[Access]:
    """Intersect the requested scopes with the subject's rights; repositories only, one entry per name."""
    wanted: dict[str, set[str]] = {}
    for access in requested:
        if access.type == REPOSITORY:
            wanted.setdefault(access.name, set()).update(access.actions)
    granted = [Access(REPOSITORY, name, granted_actions(subject, tuple(actions)))
               for name, actions in wanted.items()]
    return [access for access in granted if access.actions]
