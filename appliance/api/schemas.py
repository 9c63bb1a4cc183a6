"""Request and response shapes of the REST API, as pydantic models (they also feed OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Body(BaseModel):
    """A request body: unknown fields are refused so a typo is reported, not ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FirstUserRequest(Body):
    username: str = Field(max_length=64)
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    name: str = Field(default="", max_length=128)


class FirstUserWithTokenRequest(FirstUserRequest):
    setup_token: str | None = Field(default=None, max_length=128,
                                    description="The one-time setup link's token (required on installed appliances).")


class CreateUserRequest(FirstUserRequest):
    pass


class LoginRequest(Body):
    username: str | None = Field(default=None, max_length=254, description="Username or email.")
    email: str | None = Field(default=None, max_length=254, description="Email or username.")
    password: str = Field(max_length=1024)

    @model_validator(mode="after")
    def _one_login(self) -> LoginRequest:
        if not (self.username or self.email):
            raise ValueError("give 'username' or 'email'")
        return self

    @property
    def login(self) -> str:
        return (self.username or self.email or "").strip()


class UpdateRolesRequest(Body):
    roles: list[str] = Field(description="Site roles besides the implicit member role.")


class ChangePasswordRequest(Body):
    old_password: str | None = Field(default=None, max_length=1024,
                                     description="Required when changing your own password.")
    password: str = Field(max_length=1024)


class CreateTokenRequest(Body):
    token_name: str = Field(max_length=64)
    lifetime: str | int | None = Field(default=None, description="Duration such as 30d, 12h or seconds.")


class UsersQuery(Query):
    q: str = Field(default="", max_length=128, description="Match username, email or name.")
    status: str = Field(default="", description="active or suspended.")
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class AuditQuery(Query):
    username: str | None = Field(default=None, description="Actor's username.")
    action: str | None = Field(default=None, description="create, write, delete, login, logout.")
    resource_type: str | None = None
    resource_id: str | None = None
    since: datetime | None = Field(default=None, description="ISO 8601 time, inclusive.")
    until: datetime | None = Field(default=None, description="ISO 8601 time, exclusive.")
    limit: int = Field(default=50, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class AuditExportQuery(Query):
    username: str | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class RoleResponse(BaseModel):
    name: str
    display_name: str


class UserResponse(BaseModel):
    id: str
    username: str
    email: str
    name: str
    status: str
    roles: list[RoleResponse]
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None


class UserListResponse(BaseModel):
    users: list[UserResponse]
    count: int


class LoginResponse(BaseModel):
    session_token: str


class MessageResponse(BaseModel):
    message: str


class TokenResponse(BaseModel):
    id: str
    user_id: str
    token_name: str | None
    login_type: str
    scope: str
    lifetime_seconds: int
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None


class TokenCreatedResponse(BaseModel):
    key: str = Field(description="The token. It is shown once and never stored.")
    token: TokenResponse


class TokenListResponse(BaseModel):
    tokens: list[TokenResponse]


class AuditLogResponse(BaseModel):
    id: str
    time: datetime
    user_id: str | None
    username: str
    action: str
    resource_type: str
    resource_id: str
    resource_target: str
    diff: dict[str, Any]
    status_code: int
    ip: str | None
    user_agent: str
    request_id: str


class AuditPageResponse(BaseModel):
    audit_logs: list[AuditLogResponse]
    count: int


class BuildInfoResponse(BaseModel):
    version: str
    commit: str
    dashboard_url: str


class CaCertificateResponse(BaseModel):
    subject: str
    not_after: datetime
    fingerprint: str


class RootCaResponse(CaCertificateResponse):
    key_on_host: bool
    passphrase_on_host: bool


class IssuedCertificateResponse(BaseModel):
    serial: str
    name: str
    common_name: str
    dns_names: list[str]
    ip_addresses: list[str]
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    fingerprint: str
    is_client: bool
    status: str
    state: str
    days_left: int
    revoked_at: datetime | None
    reason: str | None


class PkiStatusResponse(BaseModel):
    root: RootCaResponse
    intermediate: CaCertificateResponse
    crl_next_update: datetime | None
    certificates: list[IssuedCertificateResponse]
    problems: list[str]
