"""Run playbooks with the ansible-core this installer carries, streaming progress and a full log.

The installer executable re-invokes itself with a hidden `__ansible-playbook` subcommand, so
Ansible runs in its own process (its global state stays out of ours) with no Python package
needed on the host; modules run under the host's /usr/bin/python3 with connection local.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HIDDEN_COMMAND = "__ansible-playbook"
_TASK = re.compile(r"^TASK \[(?P<name>.+)\] \*+$")
_RECAP = re.compile(r"^localhost\s+:\s+(?P<counts>(\w+=\d+\s*)+)$")
_FATAL = re.compile(r"^fatal: \[localhost\]: FAILED! => (?P<body>\{.*\})$")


@dataclass
class PlaybookResult:
    returncode: int
    recap: dict[str, int] = field(default_factory=dict)
    failed_task: str | None = None
    failure: str | None = None

    @property
    def changed(self) -> int:
        return self.recap.get("changed", -1)


def self_invocation() -> list[str]:
    """How to start this installer again: the frozen executable, or the module in development."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "installer"]


def run_hidden_playbook(args: list[str]) -> None:
    """Entry for the hidden subcommand: behave exactly like ansible-playbook."""
    from ansible.cli.playbook import main  # imported here: only this process needs Ansible

    sys.argv = ["ansible-playbook", *args]
    main()


def ansible_environment(state: Path, playbooks: Path) -> dict[str, str]:
    home = state / "ansible"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {**os.environ, "ANSIBLE_CONFIG": str(playbooks / "ansible.cfg"), "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
            "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8"}


def _failure_text(body: str) -> str:
    try:
        data: dict[str, Any] = json.loads(body)
    except ValueError:
        return body[:500]
    parts = [str(data.get("msg", ""))]
    for key in ("stderr", "stdout"):
        if data.get(key):
            parts.append(str(data[key]).strip().splitlines()[-1][:300])
    return " | ".join(p for p in parts if p)


def run_playbook(playbook: Path, extra_vars: Path, log: Path, env: dict[str, str], *, check: bool = False,
                 on_task: Callable[[str], None] = lambda _: None) -> PlaybookResult:
    argv = [*self_invocation(), HIDDEN_COMMAND, "-i", "localhost,", "-c", "local", str(playbook),
            "-e", f"@{extra_vars}"] + (["--check", "--diff"] if check else [])
    result = PlaybookResult(returncode=-1)
    current_task = None
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"\n===== {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC: {' '.join(argv[-6:])}\n")
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                   cwd=playbook.parent)
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            out.flush()
            text = line.rstrip()
            if task := _TASK.match(text):
                current_task = task["name"]
                on_task(current_task)
            elif fatal := _FATAL.match(text):
                result.failed_task, result.failure = current_task, _failure_text(fatal["body"])
            elif recap := _RECAP.match(text):
                result.recap = {k: int(v) for k, v in (pair.split("=") for pair in recap["counts"].split())}
        result.returncode = process.wait()
    return result
