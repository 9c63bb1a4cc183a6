from tests.support.api import Api


def test_owner_sees_themselves(owner_api: Api) -> None:
    me = owner_api.get("/api/v2/users/me").json()
    assert me["username"] == "owner"
