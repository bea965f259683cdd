"""Embedded PostgreSQL from the machine's own binaries.

Used by ``make demo`` (a persistent cluster under ``.local/pg``) and by the test
suite (a throw-away cluster per session). ``initdb`` refuses to run as root, so
when we are root every server command runs as the ``postgres`` user.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them with\n"
    "  apt-get update && apt-get install -y postgresql\n"
    "or point PG_BINDIR at the folder that holds initdb."
)


def find_bindir() -> Path:
    env = os.environ.get("PG_BINDIR")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise SystemExit(INSTALL_HINT)


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parent.name)
    except ValueError:
        return 0


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _chown_for_server(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
        os.chmod(path, 0o700)
    # every parent must be traversable by the server user
    for parent in path.parents:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if os.geteuid() == 0 and not mode & 0o001:
            os.chmod(parent, mode | 0o011)


class Cluster:
    """One PostgreSQL cluster: data in ``root/data``, socket and log in ``root``."""

    def __init__(self, root: Path | str, port: int = 5439):
        self.root = Path(root).resolve()
        self.data = self.root / "data"
        self.port = int(port)
        self.log = self.root / "postgres.log"
        self.bindir = find_bindir()

    # --- lifecycle -------------------------------------------------------
    def init(self) -> bool:
        """Create the cluster when it does not exist yet. True when created."""
        if (self.data / "PG_VERSION").exists():
            return False
        _chown_for_server(self.root)
        cmd = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
               "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"]
        subprocess.run(_as_server_user(cmd), check=True, stdout=subprocess.DEVNULL)
        return True

    def start(self, extra_conf: dict[str, str] | None = None) -> None:
        self.init()
        if self.is_running():
            return
        opts = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "200",
            "shared_buffers": "256MB",
            "fsync": "on",
        }
        opts.update(extra_conf or {})
        o = " ".join(f"-c {k}={v}" for k, v in opts.items())
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
               "-o", o, "-w", "-t", "60", "start"]
        res = subprocess.run(_as_server_user(cmd), capture_output=True, text=True)
        if res.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{res.stdout}{res.stderr}\n{tail}")

    def stop(self, mode: str = "fast") -> None:
        if not (self.data / "PG_VERSION").exists():
            return
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]
        subprocess.run(_as_server_user(cmd), capture_output=True)

    def is_running(self) -> bool:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]
        return subprocess.run(_as_server_user(cmd), capture_output=True).returncode == 0

    # --- databases -------------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--root", required=True)
    p.add_argument("--port", type=int, default=5439)
    p.add_argument("--db", action="append", default=[], help="database to create (repeatable)")
    a = p.parse_args(argv)
    c = Cluster(a.root, a.port)
    if a.action == "start":
        created = c.init()
        c.start()
        c.wait_ready()
        for db in a.db:
            c.create_database(db)
        print(f"PostgreSQL {'initialised and ' if created else ''}running on 127.0.0.1:{c.port} (data {c.data})")
    elif a.action == "stop":
        c.stop()
    else:
        print("running" if c.is_running() else "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
