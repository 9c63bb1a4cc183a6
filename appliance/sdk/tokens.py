"""API tokens on the wire: create one (its secret shown once), list and describe them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from appliance.sdk.base import Body, Line, Timestamp


class CreateTokenRequest(Body):
    token_name: Line = Field(max_length=64)
    lifetime: Line | int | None = Field(default=None, description="Duration such as 30d, 12h or seconds.")
    scope: Literal["all", "metrics"] = Field(
        default="all", description="'all' opens every route; 'metrics' only GET /api/v2/metrics (for Prometheus).")


class TokenResponse(BaseModel):
    id: str
    user_id: str
    token_name: str | None
    login_type: str
    scope: str
    lifetime_seconds: int
    created_at: Timestamp
    expires_at: Timestamp
    last_used_at: Timestamp | None


class TokenCreatedResponse(BaseModel):
    key: str = Field(description="The token. It is shown once and never stored.")
    token: TokenResponse


class TokenListResponse(BaseModel):
    tokens: list[TokenResponse]
