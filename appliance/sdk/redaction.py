"""How a secret is hidden in job logs: one rule for the daemon (what it knows) and the control plane (the rest).

The rule itself is operator_errors.redaction, which the installer's support bundle shares.
"""

from operator_errors.redaction import MIN_SECRET_LENGTH, REDACTED, redact, redact_json, usable

__all__ = ["MIN_SECRET_LENGTH", "REDACTED", "redact", "redact_json", "usable"]
