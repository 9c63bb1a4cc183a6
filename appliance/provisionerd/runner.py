"""Run one claimed job: unpack the template, run terraform stage by stage, report logs, state and result.

terraform runs in the sandbox (sandbox.py): its own uid, the job directory, the mirror, a
read-only CLI config that allows only the appliance's mirror, and an environment holding only
this job's provider values (never the daemon's, which may hold the database URL or the key).
While it applies, every change to its state file is sent to the control plane, so a daemon
killed mid-apply loses nothing terraform had already created.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from appliance.errors import OperatorError
from appliance.provisionerd import terraform
from appliance.provisionerd.backend import Backend, JobGone
from appliance.provisionerd.sandbox import Sandbox, read_job_file, sandbox_failure, stat_job_file
from appliance.provisionerd.unpack import unpack_template
from appliance.sdk.provisionerd import MAX_LOG_LINE_CHARS, MAX_LOG_LINES, JobSpec, JobType
from appliance.sdk.redaction import redact, usable

log = logging.getLogger(__name__)
STATE_FILE = "terraform.tfstate"
PLAN_FILE = "appliance.tfplan"
_APPLY_STARTED = re.compile(r": (Creating|Destroying|Modifying|Destruction complete|Creation complete)|"
                            r"^(Apply complete!|Destroy complete!|No changes\.)")


@dataclass(frozen=True)
class RunnerSettings:
    work_root: Path
    sandbox: Sandbox
    terraform: str = "terraform"
    heartbeat_interval: float = 10.0


class JobFailed(Exception):
    """A stage failed; the message is what the workspace owner sees."""


class _Logs:
    """Buffers log lines, hides secrets, and flushes in batches so a chatty apply is not one INSERT a line."""

    def __init__(self, backend: Backend, job_id: UUID, secrets: list[str]) -> None:
        self._backend, self._job_id = backend, job_id
        self._secrets = usable(secrets)  # the control plane hides what else it knows when it stores the lines
        self._pending: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._flushed = time.monotonic()
        self.errors: list[str] = []
        self.stage = "Setting up"

    def emit(self, level: str, line: str) -> None:
        line = redact(line, self._secrets)[:MAX_LOG_LINE_CHARS]  # cut after redaction: no half secret left
        if level == "error" and line.strip():
            self.errors.append(line.strip())
        with self._lock:
            self._pending.append((self.stage, level, line))
            due = len(self._pending) >= 50 or time.monotonic() - self._flushed > 0.25
        if due:
            self.flush()

    def flush(self) -> None:
        """Send what is pending; if the control plane cannot take it now, keep it for the next flush.

        Never raises: a restarting control plane must not stop terraform mid-apply (its state would
        then be written by nobody's watch) for want of a few log lines.
        """
        with self._lock:
            batch, self._pending, self._flushed = self._pending, [], time.monotonic()
        if not batch:
            return
        try:
            self._backend.logs(self._job_id, batch)
        except Exception:  # the backend's own retries are spent; the lines wait for the next flush
            log.warning("provisioner_logs_deferred", extra={"job_id": str(self._job_id), "lines": len(batch)},
                        exc_info=True)
            with self._lock:
                self._pending[:0] = batch[-MAX_LOG_LINES // 2:]


class _Watch:
    """Heartbeats, cancel and timeout checks, and state uploads while terraform runs.

    Uploads run on their own thread: a report the backend retries for minutes (the control plane
    restarting) must not hold back the heartbeats that keep the job this daemon's.
    """

    def __init__(self, backend: Backend, spec: JobSpec, state_file: Path, interval: float) -> None:
        self._backend, self._spec, self._state_file = backend, spec, state_file
        self._interval = interval
        self._deadline = time.monotonic() + spec.timeout_seconds
        self._done = threading.Event()
        self._sent: tuple[int, int] | None = None
        self._upload_lock = threading.Lock()
        self.canceled = False
        self.lost = False
        loops = [self._beats, self._uploads] if spec.type is JobType.BUILD else [self._beats]
        self._threads = [threading.Thread(target=loop, name=f"job-{spec.id}", daemon=True) for loop in loops]

    def __enter__(self) -> _Watch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join()

    def _beats(self) -> None:
        self._beat()
        while not self._done.wait(self._interval):
            self._beat()

    def _uploads(self) -> None:
        while not self._done.wait(min(1.0, self._interval)):
            try:
                self.upload_state(final=False)
            except JobGone:
                self.lost = True
            except Exception:  # the backend retried already; the next round sends the newest state
                log.warning("state_upload_failed", extra={"job_id": str(self._spec.id)}, exc_info=True)

    def _beat(self) -> None:
        try:
            answer = self._backend.heartbeat(self._spec.id)
        except Exception:  # a missed heartbeat is retried; the reaper decides when silence is fatal
            log.warning("heartbeat_failed", exc_info=True)
            return
        self.canceled = self.canceled or answer is True
        self.lost = answer is None

    def upload_state(self, *, final: bool) -> None:
        """Send the state file if it changed since the last upload; raises when the control plane refused it.

        terraform rewrites the file in place while it applies: a read mid-write is not sent (the next
        round is), so a half-written state never replaces a whole one on the server.
        """
        with self._upload_lock:
            stat = stat_job_file(self._state_file)
            if stat is None:
                return
            mark = (stat.st_mtime_ns, stat.st_size)
            if mark == self._sent:
                return
            state = read_job_file(self._state_file) or b""
            if not final and not _is_whole(state):
                return
            self._backend.save_state(self._spec.id, state)
            self._sent = mark

    def stop_reason(self) -> str | None:
        if self.canceled:
            return "the build was canceled"
        if self.lost:
            return "the control plane no longer assigns this job to this daemon"
        if time.monotonic() > self._deadline:
            return f"the job ran longer than its timeout of {self._spec.timeout_seconds}s"
        return None


def _is_whole(state: bytes) -> bool:
    try:
        return isinstance(json.loads(state), dict)
    except ValueError:
        return False


_GENERIC = "Terraform encountered problems during initialisation"


def _errors_summary(errors: list[str], fallback: str) -> str:
    """Every `Error:` headline terraform printed, with where it points (file and line)."""
    lines = [line.strip("│ ").strip() for line in errors]
    found = []
    for index, line in enumerate(lines):
        if line.startswith("Error:") and _GENERIC not in line:
            where = next((x for x in lines[index + 1:index + 4] if x.startswith("on ")), "")
            found.append(f"{line} ({where})" if where else line)
    return "; ".join(found)[:1500] if found else fallback


def _hint(message: str) -> str:
    if "Failed to query available provider packages" in message or "provider registry" in message:
        return (f"{message} -- The provider is not in the appliance's mirror: add it with a signed bundle or "
                "`appliance mirror build`, or fix the template's required_providers.")
    return message


def _failure_message(err: Exception, terraform_command: str) -> str:
    if isinstance(err, terraform.Interrupted):
        return f"Stopped: {err}."
    if isinstance(err, OperatorError):
        return f"{err.message} {err.hint}".strip()
    if isinstance(err, FileNotFoundError) and err.filename == terraform_command:
        return (f"terraform is not installed on the provisioner host ({terraform_command!r} is not on PATH). "
                "Install it (the appliance bundle ships it) and retry the build.")
    return _hint(str(err))


class JobRunner:
    def __init__(self, backend: Backend, settings: RunnerSettings) -> None:
        self._backend = backend
        self._settings = settings

    def run(self, spec: JobSpec) -> None:
        sandbox = self._settings.sandbox
        logs = _Logs(self._backend, spec.id, spec.secrets)
        workdir: Path | None = None
        state_file = Path("/nonexistent") / STATE_FILE
        recorded = False  # whether the control plane holds the state terraform left in state_file
        try:
            workdir = sandbox.prepare(self._settings.work_root / "jobs", spec.id)
            state_file = workdir / STATE_FILE
            unpack_template(spec.source, workdir)
            if spec.state is not None:
                state_file.write_bytes(spec.state)
            sandbox.hand_over(workdir)
            interval = min(self._settings.heartbeat_interval, spec.heartbeat_seconds)
            with _Watch(self._backend, spec, state_file, interval) as watch:
                step = _Steps(self._settings, workdir, dict(spec.env), logs, watch)
                if spec.type is JobType.IMPORT:
                    plan = step.import_template()
                    logs.flush()
                    self._backend.complete_import(spec.id, plan)
                else:
                    step.build(spec.transition)
                    watch.upload_state(final=True)  # raises unless the control plane stored it
                    recorded = True
                    logs.flush()
                    self._backend.complete_build(spec.id)
        except JobGone as err:
            _log_gone(err)
        except Exception as err:  # whatever went wrong, the job ends now, not at the heartbeat timeout
            if not isinstance(err, JobFailed | terraform.Interrupted | tarfile.TarError | OSError | OperatorError):
                log.exception("provisioner_job_crashed", extra={"job_id": str(spec.id)})
            message = _failure_message(err, self._settings.terraform)
            logs.stage = "Failed"
            logs.emit("error", message)
            logs.flush()
            recorded = self._report_failure(spec, message, state_file)
        finally:
            if spec.type is JobType.BUILD and not recorded:
                self._keep_state(spec.id, state_file)
            if workdir is not None:
                _clean(sandbox, workdir, spec.id)

    def _report_failure(self, spec: JobSpec, message: str, state_file: Path) -> bool:
        """Save the state terraform left, then fail the job; True if the control plane holds that state."""
        state = _read(state_file) if spec.type is JobType.BUILD else None
        recorded = state is None
        try:
            if state is not None:
                try:
                    self._backend.save_state(spec.id, state)
                    recorded = True
                except JobGone:
                    raise
                except Exception as err:  # the backend retried already: fail the job, saying so
                    message = f"{message} The state terraform wrote could not be saved ({err}); it is kept on " \
                              "the provisioner host."
            self._backend.fail(spec.id, message)
        except JobGone as err:
            _log_gone(err)
        return recorded

    def _keep_state(self, job_id: UUID, state_file: Path) -> None:
        """The control plane never took the state terraform wrote last: keep it on this host, never delete it."""
        state = _read(state_file)  # never through a link the template planted
        if not state:
            return
        kept = self._settings.work_root / "unsent-state" / f"{job_id}.tfstate"
        kept.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        kept.write_bytes(state)
        log.error("provisioner_state_kept", extra={
            "job_id": str(job_id), "path": str(kept),
            "hint": "The control plane does not hold this state: keep the file until an operator restores it."})


def _log_gone(err: JobGone) -> None:
    """A report the control plane refused because the job is no longer this daemon's: nothing it did was recorded."""
    log.error("provisioner_job_gone", extra={"job_id": str(err.job_id), "error": str(err)})


def _clean(sandbox: Sandbox, workdir: Path, job_id: UUID) -> None:
    try:
        sandbox.clean(workdir)
    except Exception:  # a leftover job directory costs disk, not correctness; the next run of this job retries
        log.warning("job_dir_cleanup_failed", extra={"job_id": str(job_id), "path": str(workdir)}, exc_info=True)


def _read(path: Path) -> bytes | None:
    try:
        return read_job_file(path)
    except OSError:  # a link or FIFO the template planted in place of its state: there is no state to send
        return None


@dataclass
class _Steps:
    settings: RunnerSettings
    workdir: Path
    env: dict[str, str]
    logs: _Logs
    watch: _Watch

    def _terraform(self, stage: str, args: list[str], what: str) -> None:
        self.logs.stage = stage
        self.logs.emit("info", f"$ terraform {' '.join(args)}")
        self.logs.errors.clear()
        code = terraform.run([*args, "-no-color"], self.settings.sandbox, self.workdir, self.env, self._emit,
                             self.watch.stop_reason, self.settings.terraform)
        if code != 0 and (broken := sandbox_failure(self.logs.errors)):
            raise JobFailed(broken)
        if code != 0:
            raise JobFailed(f"{what} failed: " + _errors_summary(self.logs.errors, f"terraform exited with {code}."))

    def _show_json(self, plan: str) -> dict[str, Any]:
        result = self.settings.sandbox.run(self.workdir, [self.settings.terraform, "show", "-json", "-no-color", plan],
                                           self.env, timeout=300)
        if result.returncode != 0:
            raise JobFailed("terraform show failed: " + result.stderr.decode("utf-8", "replace")[-500:])
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed

    def import_template(self) -> dict[str, Any]:
        self._terraform("Initializing", ["init", "-input=false"], "terraform init")
        self._terraform("Validating", ["validate"], "terraform validate")
        self._terraform("Planning", ["plan", "-input=false", "-refresh=false", f"-out={PLAN_FILE}"], "terraform plan")
        self.logs.stage = "Reading template"
        plan = self._show_json(PLAN_FILE)
        self.logs.emit("info", "Read parameters, agents and apps from the plan.")
        return plan

    def _emit(self, level: str, line: str) -> None:
        if self.logs.stage == "Planning" and _APPLY_STARTED.search(line):
            self.logs.stage = "Applying"
        self.logs.emit(level, line)

    def build(self, transition: str) -> None:
        self._terraform("Initializing", ["init", "-input=false"], "terraform init")
        destroy = ["-destroy"] if transition == "delete" else []
        # One `apply` plans and applies: a separate `plan -out` would start every provider twice. Its
        # output moves from the Planning stage to Applying at the first change it makes.
        self._terraform("Planning", ["apply", "-input=false", "-auto-approve", *destroy], "terraform apply")
        self.logs.stage = "Cleaning up"
        self.logs.emit("info", f"Workspace {transition} finished.")


