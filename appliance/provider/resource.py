"""The shape every appliance resource shares: it exists only in terraform's state.

Agents, apps and metadata are records the appliance reads from state after a build; there is
nothing outside to refresh, so reading returns the state as it is and schema upgrades keep it.
"""

from __future__ import annotations

from typing import Any

from tf.iface import DeleteContext, ReadContext, Resource, State, UpgradeContext


class StateResource(Resource):  # type: ignore[misc]  # tf ships no type hints
    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def read(self, ctx: ReadContext, current: State) -> State:
        return current

    def delete(self, ctx: DeleteContext, current: State) -> None:
        return None

    def upgrade(self, ctx: UpgradeContext, version: int, old: State) -> State:
        return old
