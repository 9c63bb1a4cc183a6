"""Users on the wire: the first user, login, user administration and the user as the API shows it."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from appliance.sdk.base import BigCount, Body, Line, Query, Timestamp


class FirstUserRequest(Body):
    username: Line = Field(max_length=64)
    email: Line = Field(max_length=254)
    password: str = Field(max_length=1024)
    name: Line = Field(default="", max_length=128)


class FirstUserWithTokenRequest(FirstUserRequest):
    setup_token: Line | None = Field(default=None, max_length=128,
                                    description="The one-time setup link's token (required on installed appliances).")


class CreateUserRequest(FirstUserRequest):
    pass


class LoginRequest(Body):
    username: Line | None = Field(default=None, max_length=254, description="Username or email.")
    email: Line | None = Field(default=None, max_length=254, description="Email or username.")
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
    roles: list[Line] = Field(description="Site roles besides the implicit member role.")


class ChangePasswordRequest(Body):
    old_password: str | None = Field(default=None, max_length=1024,
                                     description="Required when changing your own password.")
    password: str = Field(max_length=1024)


class UsersQuery(Query):
    q: Line = Field(default="", max_length=128, description="Match username, email or name.")
    status: Line = Field(default="", description="active or suspended.")
    limit: int = Field(default=100, ge=1, le=1000)
    offset: BigCount = 0


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
    created_at: Timestamp
    updated_at: Timestamp
    last_seen_at: Timestamp | None


class UserListResponse(BaseModel):
    users: list[UserResponse]
    count: int


class LoginResponse(BaseModel):
    session_token: str


class GitSSHKeyResponse(BaseModel):
    """GET/PUT /api/v2/users/{user}/gitsshkey: the workspace owner's SSH public key (Coder's gitsshkey)."""

    user_id: str
    created_at: Timestamp
    updated_at: Timestamp
    public_key: str  # OpenSSH line; templates read it as data.appliance_workspace_owner.ssh_public_key
