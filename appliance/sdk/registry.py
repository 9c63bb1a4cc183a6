"""The registry token endpoint on the wire, as the Docker registry token spec shapes it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from appliance.sdk.base import Line, Query, Timestamp


class RegistryTokenQuery(Query):
    """What docker, podman and skopeo send: the service, scopes, and fields the appliance ignores."""

    service: Line = Field(max_length=255, description="The registry's service name, from its challenge.")
    scope: Line | None = Field(default=None, max_length=4096,
                               description="repository:NAME:pull,push; repeat the parameter for more.")
    account: Line | None = Field(default=None, max_length=255, description="Ignored: the credentials name the account.")
    client_id: Line | None = Field(default=None, max_length=255, description="Ignored.")
    offline_token: Line | None = Field(default=None, max_length=16, description="Ignored: no refresh tokens.")


class RegistryTokenResponse(BaseModel):
    token: str = Field(description="The JWT to send to the registry as 'Authorization: Bearer'.")
    access_token: str = Field(description="The same JWT, under the OAuth 2 name.")
    expires_in: int = Field(description="Seconds until the token expires.")
    issued_at: Timestamp
