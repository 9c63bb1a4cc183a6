"""Identity and access: users, passwords, sessions and API tokens, roles, login throttling."""
