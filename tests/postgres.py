"""A real PostgreSQL server for the tests, started by the suite: Debian's `postgresql`
package, `initdb` into a temporary folder, listening on a unix socket only.

As root (CI containers) the server runs as the `postgres` user, which PostgreSQL requires.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path


def _bindir() -> Path:
    found = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    newest = sorted(found, key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if newest:
        return newest[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError(
        "PostgreSQL's server programs are not installed: `apt-get install postgresql` "
        "(.ci/run does it)"
    )


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.socket_dir.mkdir()
        self.log = self.root / "server.log"
        self.user = "postgres"
        if os.geteuid() == 0:
            self.root.chmod(0o755)
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        else:
            import getpass

            self.user = getpass.getuser()
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8")
        conf = self.data / "postgresql.conf"
        with conf.open("a") as fh:
            # Unix socket only; a throwaway cluster needs no durability.
            fh.write(f"listen_addresses = ''\nunix_socket_directories = '{self.socket_dir}'\n")
            fh.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
            fh.write("max_connections = 200\n")
        self.start()

    def _run(self, program: str, *args: str) -> None:
        cmd = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{program} failed:\n{result.stdout}{result.stderr}{log}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        """A postgresql:// URL, as DATABASE_URL carries it, over the unix socket."""
        return f"postgresql://{self.user}@/{database}?host={self.socket_dir}"

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._run("createdb", "-h", str(self.socket_dir), "-U", self.user, name)
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
