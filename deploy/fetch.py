"""Fetch what DVC tracks from the project's remote, before CI or the deploy reproduces it.

    python deploy/fetch.py

`dvc pull` from the default remote. Images you track with `dvc add` (data/raw.dvc) and a
model you continue from (models/base.dvc) exist only there, so when one is still missing
afterwards this fails and says why: no remote configured, or the remote's credentials not set
(naming the secrets to add). Pipeline outputs the remote lacks are left to `dvc repro`. With
nothing tracked by `dvc add` and no remote (the bundled sample), there is nothing to fetch.
Exit status 0 when every tracked source is in the workspace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

# The environment variables DVC's remotes read their credentials from, by URL scheme; a
# workflow passes them from repository secrets of the same names.
SECRETS = {
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    "gs": ("GOOGLE_APPLICATION_CREDENTIALS",),
    "gdrive": ("GDRIVE_CREDENTIALS_DATA",),
    "azure": ("AZURE_STORAGE_CONNECTION_STRING",),
}
SKIP_DIRS = {".git", ".dvc", ".venv", "node_modules"}


def tracked_sources(root: Path) -> list[Path]:
    """The paths `dvc add` tracks (each `<path>.dvc` file's outs), relative to root."""
    found = []
    for dvc_file in sorted(root.rglob("*.dvc")):
        rel = dvc_file.relative_to(root)
        if dvc_file.is_dir() or SKIP_DIRS & set(rel.parts[:-1]):
            continue
        outs = (yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}).get("outs") or []
        found += [rel.parent / out["path"] for out in outs if "path" in out]
    return found


def default_remote(root: Path) -> tuple[str, str] | None:
    """(name, url) of the default DVC remote, or None when there is none."""

    def dvc(*args: str) -> str:
        done = subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    name = dvc("remote", "default")
    if not name:
        return None
    return name, dvc("config", f"remote.{name}.url")


def missing_secrets(url: str, environ: dict[str, str]) -> list[str]:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    return [name for name in SECRETS.get(scheme, ()) if not environ.get(name)]


def diagnosis(absent: list[Path], remote: tuple[str, str] | None, environ: dict[str, str]) -> str:
    """Why tracked sources are missing after the pull, and what to do."""
    names = ", ".join(map(str, absent))
    if remote is None:
        return (
            f"error: {names} tracked by DVC but no default DVC remote is configured: "
            "`dvc remote add -d storage <url>`, `dvc push`, commit .dvc/config"
        )
    name, url = remote
    secrets = missing_secrets(url, environ)
    if secrets:
        return (
            f"error: {names} not fetched: remote {name!r} ({url}) needs the secret(s) "
            f"{', '.join(secrets)}. Add them as repository secrets (Settings > Secrets and "
            "variables > Actions); the workflows pass them to this step."
        )
    return f"error: {names} not fetched from remote {name!r} ({url}): was `dvc push` run?"


def main(root: Path = Path()) -> int:
    sources = tracked_sources(root)
    remote = default_remote(root)
    pulled = True
    if remote is None:
        print("no default DVC remote configured; nothing to pull")
    else:
        print(f"dvc pull from remote {remote[0]!r} ({remote[1]})", flush=True)
        pulled = subprocess.run(["dvc", "pull"], cwd=root).returncode == 0
    absent = [s for s in sources if not (root / s).exists()]
    if absent:
        print(diagnosis(absent, remote, dict(os.environ)))
        return 1
    if not pulled:
        print("note: some pipeline outputs are not in the remote; `dvc repro` rebuilds them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
