"""Where things live on an installed host (FHS). A root prefix lets tests use a scratch tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# In start order (uninstall stops them in reverse): the runtime service pulls from the registry,
# and the provisioner hands the runtime's socket to terraform.
UNITS = ("postgresql@15-main.service", "appliance-console.service", "appliance-gateway.service",
         "appliance-relay.service", "nginx.service", "appliance-pki-renew.timer", "appliance-registry.service",
         "appliance-runtime.service", "appliance-provisioner.service", "appliance-backup.timer")


@dataclass(frozen=True)
class HostPaths:
    root: Path = Path("/")

    @property
    def opt(self) -> Path:
        return self.root / "opt/appliance"

    @property
    def releases(self) -> Path:
        return self.opt / "releases"

    @property
    def current(self) -> Path:
        """Symlink to the active release; switched in one rename."""
        return self.opt / "current"

    def release(self, version: str) -> Path:
        return self.releases / version

    @property
    def etc(self) -> Path:
        return self.root / "etc/appliance"

    @property
    def config(self) -> Path:
        return self.etc / "appliance.toml"

    @property
    def trusted_keys(self) -> Path:
        """The release keys this host trusts (OpenPGP, binary or armored), pinned at first install."""
        return self.etc / "trusted-keys.pgp"

    @property
    def secrets(self) -> Path:
        return self.etc / "secrets"

    @property
    def state(self) -> Path:
        return self.root / "var/lib/appliance"

    @property
    def installer_state(self) -> Path:
        return self.state / "installer"

    @property
    def receipts(self) -> Path:
        return self.installer_state / "receipts"

    @property
    def overrides(self) -> Path:
        """Every preflight check an operator overrode, one JSON line each, kept forever."""
        return self.installer_state / "preflight-overrides.jsonl"

    @property
    def journal(self) -> Path:
        """The running (or interrupted) upgrade, rollback or restore: its steps and how far each got."""
        return self.installer_state / "journal.json"

    @property
    def backups(self) -> Path:
        """One folder per backup (manifest.json + its files); retention keeps the newest N."""
        return self.state / "backups"

    @property
    def backup_summary(self) -> Path:
        """The backups folder is root's alone: this world-readable summary tells the health report and the
        metrics (user appliance) when the last backup succeeded or failed, and nothing a backup holds."""
        return self.installer_state / "backups.json"

    @property
    def upgrade_requests(self) -> Path:
        """Where the console (never root) drops an uploaded bundle and an apply request; a root path unit acts."""
        return self.state / "upgrade-requests"

    @property
    def logs(self) -> Path:
        return self.root / "var/log/appliance"

    @property
    def log(self) -> Path:
        return self.logs / "installer.log"

    @property
    def ca_bundle(self) -> Path:
        return self.state / "pki/ca-bundle.pem"

    def installed_version(self) -> str | None:
        if not self.current.is_symlink():
            return None
        return self.current.resolve().name
