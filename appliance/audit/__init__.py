"""The append-only audit log: who did what to which resource, from where, with what diff."""
