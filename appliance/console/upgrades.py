"""The Upgrade page (owners only): upload a signed bundle, see its verification and plan, apply it.

The upload streams into the spool as it arrives (SpoolingRequest), never into memory, under its
own cap (upgrade_max_bundle_mb) instead of the app's 1 MiB; the caller is authenticated and
authorized before one byte is written. Verification runs in the gateway (gateway/upgrades.py),
which the page follows; applying writes the request the root path unit acts on (docs/adr/0039).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import IO, Any, cast

from flask import Request, flash, redirect, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from appliance import buildinfo, upgrades
from appliance.auth.rbac import Action, Resource, ResourceType, Subject, authorize
from appliance.auth.web import current_auth, database, server_config
from appliance.config import ServerConfig
from appliance.console.blueprint import bp
from appliance.console.pages import page, render
from appliance.db.database import Connection
from appliance.errors import InvalidInput, TooLarge, Unauthorized
from appliance.sdk.upgrades import BUNDLE_SUFFIX
from bundles.errors import BundleError
from bundles.manifest import parse_manifest
from bundles.tarball import read_head

UPLOAD_ENDPOINT = "console.upgrade_upload"
FORM_OVERHEAD = 64 << 10  # the multipart boundaries and the CSRF field around the file
DEPLOYMENT = Resource(ResourceType.DEPLOYMENT)


class SpoolingRequest(Request):
    """Flask's request, except that the upload route's file parts are written straight into the spool."""

    spool_to: Path | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spooled: list[Path] = []

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        if self.spool_to is None:
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        path = upgrades.partial_path(self.spool_to, upgrades.new_upload_id())
        self.spooled.append(path)
        return path.open("x+b")


def _spooling() -> SpoolingRequest:
    return cast(SpoolingRequest, request._get_current_object())  # type: ignore[attr-defined]


def _too_large(config: ServerConfig) -> TooLarge:
    return TooLarge(f"The bundle is larger than {config.upgrade_max_bundle_mb} MiB, the most this appliance "
                    "accepts (upgrade_max_bundle_mb).",
                    "Check that it is an appliance bundle; for a bigger one, raise upgrade_max_bundle_mb in "
                    "appliance.toml (and appliance_upgrade_max_bundle_mb for nginx), or run appliance-installer "
                    "upgrade on the host.")


def spool_upload() -> None:
    """A before_request hook, before anything reads the form: authorize, then stream the file into the spool."""
    if request.endpoint != UPLOAD_ENDPOINT or request.method != "POST":
        return
    with database().transaction() as conn:
        auth = current_auth(conn)
        if auth is None:
            raise Unauthorized("You are not logged in.", "Log in as an owner, then upload the bundle again.")
        authorize(auth.subject, Action.UPDATE, DEPLOYMENT)
    config = server_config()
    limit = (config.upgrade_max_bundle_mb << 20) + FORM_OVERHEAD
    if (request.content_length or 0) > limit:
        raise _too_large(config)
    request.max_content_length = limit
    config.upgrade_spool_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    _spooling().spool_to = config.upgrade_spool_dir
    try:
        request.files  # noqa: B018 -- parsing the form now writes the file into the spool
    except RequestEntityTooLarge as err:  # a chunked body that ran past the cap
        raise _too_large(config) from err


@bp.teardown_app_request
def _drop_partial_uploads(_: BaseException | None) -> None:
    """Whatever ended the request (refused, too big, CSRF), no half upload stays in the spool."""
    for path in getattr(request, "spooled", ()):
        path.unlink(missing_ok=True)


def _keep_upload() -> str:
    """The form's bundle, fsync'd and renamed from its partial name: its upload id."""
    upload = request.files.get("bundle")
    if upload is None or not upload.filename:
        raise InvalidInput("Choose a bundle file to upload.", "Pick the appliance-<version>.bundle file.",
                           field="bundle")
    stream = upload.stream
    stream.flush()
    os.fsync(stream.fileno())
    partial = Path(stream.name)
    stream.close()
    upload_id = partial.name.removeprefix(".").removesuffix(".partial")
    partial.replace(partial.with_name(upload_id + BUNDLE_SUFFIX))
    return upload_id


def _check_head(spool: Path, upload_id: str) -> None:
    """Refuse at once what is plainly not a bundle of this product; the gateway verifies the rest."""
    try:
        manifest, _, _ = read_head(upgrades.bundle_path(spool, upload_id))
        parse_manifest(manifest)
    except (BundleError, tarfile.TarError, OSError) as err:
        upgrades.discard(spool, upload_id)
        message, hint = (err.message, err.hint) if isinstance(err, BundleError) else \
            ("The file is not an appliance bundle (not a tar archive).", "Upload the appliance-<version>.bundle file.")
        raise InvalidInput(message, hint, field="bundle") from err


def _context(**extra: Any) -> dict[str, Any]:
    config = server_config()
    spool = config.upgrade_spool_dir
    return {"max_mb": config.upgrade_max_bundle_mb, "installed": config.upgrade_path_unit,
            "installed_version": buildinfo.version(), "pending": upgrades.pending_request(spool),
            "journal": upgrades.read_installer_json(config.upgrade_journal), **extra}


@bp.get("/admin/upgrade")
@page()
def upgrade(conn: Connection, subject: Subject) -> Any:
    authorize(subject, Action.UPDATE, DEPLOYMENT)
    return render("upgrade.html", **_context())


@bp.post("/admin/upgrade")
@page()
def upgrade_upload(conn: Connection, subject: Subject) -> Any:
    authorize(subject, Action.UPDATE, DEPLOYMENT)
    spool = server_config().upgrade_spool_dir
    try:
        upload_id = _keep_upload()
        _check_head(spool, upload_id)
    except InvalidInput as err:
        return render("upgrade.html", 400, error=err.message, hint=err.detail, **_context())
    return redirect(url_for("console.upgrade_bundle", upload_id=upload_id), 303)


@bp.get("/admin/upgrade/<upload_id>")
@page()
def upgrade_bundle(conn: Connection, subject: Subject, upload_id: str) -> Any:
    authorize(subject, Action.UPDATE, DEPLOYMENT)
    report = upgrades.read_report(server_config().upgrade_spool_dir, upload_id)
    return render("upgrade_bundle.html", upload_id=upload_id, report=report, **_context())


@bp.post("/admin/upgrade/<upload_id>/apply")
@page(back="console.upgrade_bundle")
def upgrade_apply(conn: Connection, subject: Subject, upload_id: str) -> Response:
    authorize(subject, Action.UPDATE, DEPLOYMENT)
    config = server_config()
    if not config.upgrade_path_unit:
        flash("Upgrades apply only on an installed appliance: `appliance server` has no root unit to run the "
              "installer. On an installed host, upload the bundle there, or run appliance-installer upgrade.", "error")
        return redirect(url_for("console.upgrade_bundle", upload_id=upload_id))
    upgrades.request_apply(config, upload_id, request.form.get("manifest_sha256", ""), subject.username)
    flash("Upgrade requested: the installer verifies the bundle again, then runs the plan. Progress shows below.",
          "success")
    return redirect(url_for("console.upgrade_bundle", upload_id=upload_id))


@bp.post("/admin/upgrade/<upload_id>/delete")
@page(back="console.upgrade_bundle")
def upgrade_delete(conn: Connection, subject: Subject, upload_id: str) -> Response:
    authorize(subject, Action.UPDATE, DEPLOYMENT)
    spool = server_config().upgrade_spool_dir
    upgrades.bundle_path(spool, upload_id)
    upgrades.discard(spool, upload_id)
    flash("The uploaded bundle is deleted.", "info")
    return redirect(url_for("console.upgrade"))
