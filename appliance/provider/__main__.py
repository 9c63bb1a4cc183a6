"""The provider executable: terraform starts it as a plugin (PyInstaller builds it from this file)."""

from __future__ import annotations

from tf.runner import run_provider

from appliance.provider.provider import ApplianceProvider


def main() -> None:
    run_provider(ApplianceProvider())


if __name__ == "__main__":
    main()
