"""/api/v2/users: first user, login and logout, the current user, and user administration."""

from __future__ import annotations

from flask import Response

from appliance.api.blueprints import v2
from appliance.api.context import authenticated, caller
from appliance.api.spec import endpoint, json_response
from appliance.auth import apikeys, ssh_keys, users
from appliance.auth.login import log_in
from appliance.auth.web import (
    clear_session_cookie,
    database,
    request_info,
    server_config,
    set_session_cookie,
)
from appliance.errors import NotFound
from appliance.responses import user_response
from appliance.sdk.meta import MessageResponse
from appliance.sdk.users import (
    ChangePasswordRequest,
    CreateUserRequest,
    FirstUserWithTokenRequest,
    GitSSHKeyResponse,
    LoginRequest,
    LoginResponse,
    UpdateRolesRequest,
    UserListResponse,
    UserResponse,
    UsersQuery,
)

TAG = "Users"


@endpoint(v2, "GET", "/users/first", summary="Tell whether the first user exists", tag=TAG,
          response=MessageResponse, is_authenticated=False, errors=(404,))
def first_user_status() -> Response:
    with database().transaction() as conn:
        if not users.has_any_user(conn):
            raise NotFound("The first user has not been created yet.",
                           "Create it with POST /api/v2/users/first or at /setup.")
    return json_response(MessageResponse(message="The first user has already been created."))


@endpoint(v2, "POST", "/users/first", summary="Create the first user, who becomes Owner", tag=TAG,
          body=FirstUserWithTokenRequest, response=UserResponse, status=201, is_authenticated=False,
          errors=(403, 409))
def create_first_user(body: FirstUserWithTokenRequest) -> Response:
    fields = body.model_dump(exclude={"setup_token"})
    with database().transaction() as conn:
        user = users.create_first_user(conn, users.NewUser(**fields), request_info(), setup_token=body.setup_token,
                                       requires_setup_token=server_config().first_user_requires_setup_token)
    return json_response(user_response(user), 201)


@endpoint(v2, "POST", "/users/login", summary="Log in with username or email and password",
          tag=TAG, body=LoginRequest, response=LoginResponse, status=201, is_authenticated=False,
          errors=(401, 429))
def login(body: LoginRequest) -> Response:
    token, _ = log_in(database(), body.login, body.password,
                      lifetime=server_config().session_lifetime, info=request_info())
    response = json_response(LoginResponse(session_token=token), 201)
    set_session_cookie(response, token)
    return response


@endpoint(v2, "POST", "/users/logout", summary="End the current session", tag=TAG,
          response=MessageResponse)
def logout() -> Response:
    with authenticated() as (conn, subject):
        apikeys.end_session(conn, subject, request_info())
    response = json_response(MessageResponse(message="Logged out."))
    clear_session_cookie(response)
    return response


@endpoint(v2, "GET", "/users", summary="List users", tag=TAG, query=UsersQuery,
          response=UserListResponse)
def list_users(query: UsersQuery) -> Response:
    with authenticated() as (conn, subject):
        found, count = users.list_users(conn, subject, search=query.q, status=query.status,
                                        limit=query.limit, offset=query.offset)
    return json_response(UserListResponse(users=[user_response(u) for u in found], count=count))


@endpoint(v2, "POST", "/users", summary="Create a user", tag=TAG, body=CreateUserRequest,
          response=UserResponse, status=201, errors=(409,))
def create_user(body: CreateUserRequest) -> Response:
    with authenticated() as (conn, subject):
        user = users.create_user(conn, subject, users.NewUser(**body.model_dump()), request_info())
    return json_response(user_response(user), 201)


@endpoint(v2, "GET", "/users/<user>", summary="Get a user by id, username or 'me'", tag=TAG,
          response=UserResponse, errors=(404,))
def get_user(user: str) -> Response:
    if user == "me":
        return json_response(user_response(caller()))
    with authenticated() as (conn, subject):
        found = users.get_user(conn, subject, user)
    return json_response(user_response(found))


def _set_status(user: str, status: str) -> UserResponse:
    with authenticated() as (conn, subject):
        return user_response(users.set_status(conn, subject, user, status, request_info()))


@endpoint(v2, "PUT", "/users/<user>/status/suspend", summary="Suspend a user", tag=TAG,
          response=UserResponse, errors=(404, 409))
def suspend_user(user: str) -> Response:
    return json_response(_set_status(user, "suspended"))


@endpoint(v2, "PUT", "/users/<user>/status/activate", summary="Activate a suspended user", tag=TAG,
          response=UserResponse, errors=(404, 409))
def activate_user(user: str) -> Response:
    return json_response(_set_status(user, "active"))


@endpoint(v2, "PUT", "/users/<user>/roles", summary="Set a user's site roles (owners only)",
          tag=TAG, body=UpdateRolesRequest, response=UserResponse, errors=(404, 409))
def set_roles(user: str, body: UpdateRolesRequest) -> Response:
    with authenticated() as (conn, subject):
        updated = users.set_roles(conn, subject, user, body.roles, request_info())
    return json_response(user_response(updated))


@endpoint(v2, "PUT", "/users/<user>/password", summary="Change a password; ends other sessions",
          tag=TAG, body=ChangePasswordRequest, response=UserResponse, errors=(404,))
def change_password(user: str, body: ChangePasswordRequest) -> Response:
    with authenticated() as (conn, subject):
        updated = users.change_password(conn, subject, user, old_password=body.old_password,
                                        new_password=body.password, info=request_info())
    return json_response(user_response(updated))


@endpoint(v2, "DELETE", "/users/<user>", summary="Delete a user and revoke their tokens", tag=TAG,
          response=MessageResponse, errors=(404, 409))
def delete_user(user: str) -> Response:
    with authenticated() as (conn, subject):
        users.delete_user(conn, subject, user, request_info())
    return json_response(MessageResponse(message=f"User {user} deleted."))



def _git_ssh_key(key: ssh_keys.UserSshKey) -> GitSSHKeyResponse:
    return GitSSHKeyResponse(user_id=str(key.user_id), created_at=key.created_at, updated_at=key.updated_at,
                             public_key=key.public_key)


@endpoint(v2, "GET", "/users/<user>/gitsshkey", summary="The user's SSH public key for Git (made on first use)",
          tag=TAG, response=GitSSHKeyResponse, errors=(403, 404))
def get_git_ssh_key(user: str) -> Response:
    with authenticated() as (conn, subject):
        key = ssh_keys.get_key(conn, subject, user)
    return json_response(_git_ssh_key(key))


@endpoint(v2, "PUT", "/users/<user>/gitsshkey", summary="Regenerate the user's SSH key for Git", tag=TAG,
          response=GitSSHKeyResponse, errors=(403, 404))
def regenerate_git_ssh_key(user: str) -> Response:
    with authenticated() as (conn, subject):
        key = ssh_keys.regenerate(conn, subject, user, request_info())
    return json_response(_git_ssh_key(key))
