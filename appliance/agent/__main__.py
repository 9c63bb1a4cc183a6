"""The agent's entry point: `python -m appliance.agent`, and what PyInstaller builds the executable from."""

from __future__ import annotations

import sys

from appliance.agent.main import main

if __name__ == "__main__":
    sys.exit(main())
