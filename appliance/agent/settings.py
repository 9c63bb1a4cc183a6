"""The agent's configuration, from the environment the init script gives it."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from appliance.errors import OperatorError
from appliance.sdk.agents import AGENT_TOKEN_ENV, AGENT_URL_ENV, RELAY_PATH

CA_FILE_ENV = "SSL_CERT_FILE"  # the init script points it at the appliance's CA bundle


@dataclass(frozen=True)
class AgentSettings:
    url: str  # the control plane's access URL, without a trailing slash
    token: str
    ca_file: str | None  # trusted for HTTPS to the control plane and the relay; None: the system's

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgentSettings:
        """The settings, or an OperatorError naming the variable that is missing or wrong."""
        url = env.get(AGENT_URL_ENV, "").strip().rstrip("/")
        if not url:
            raise OperatorError(f"{AGENT_URL_ENV} is not set.",
                                "The appliance_agent init script exports it; set it to the appliance's URL.")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OperatorError(f"{AGENT_URL_ENV} is not an http(s) URL: {url!r}.",
                                "Set it to the appliance's access URL, such as https://appliance.example:443.")
        token = env.get(AGENT_TOKEN_ENV, "").strip()
        if not token:
            raise OperatorError(f"{AGENT_TOKEN_ENV} is not set.",
                                "The template passes appliance_agent.<name>.token to the workspace; check it does.")
        ca_file = env.get(CA_FILE_ENV, "").strip() or None
        if ca_file is not None and not Path(ca_file).is_file():
            raise OperatorError(f"{CA_FILE_ENV} names {ca_file}, which is not a file.",
                                "Point it at the appliance's CA bundle, or unset it to trust the system's CAs.")
        return cls(url, token, ca_file)

    @property
    def relay_url(self) -> str:
        return self.url + RELAY_PATH

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS for the relay trusting the same CA as the API calls; None over plain HTTP."""
        if not self.url.startswith("https://"):
            return None
        return ssl.create_default_context(cafile=self.ca_file)
