"""A throwaway PostgreSQL cluster for the tests, never a system service.

`initdb` into a temp folder, `pg_ctl start` on a free loopback port with the unix socket in
that folder (as the `postgres` user when the tests run as root: PostgreSQL refuses root),
one cluster per test session, stopped at its end. Each test gets its own database, a copy
of one migrated template. Tests connect over TCP as a password-protected role, the
password in PGPASSWORD, as a site would. Missing binaries skip the PostgreSQL tests, unless
NEWSLETTER_REQUIRE_POSTGRES=1 (CI) makes that a failure.
"""

from __future__ import annotations

import glob
import itertools
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROLE = "newsletter"
TEMPLATE = "newsletter_template"


def bindir() -> Path | None:
    """Where initdb and pg_ctl are: `pg_config --bindir`, else the newest Debian folder."""
    found: list[str] = []
    if shutil.which("pg_config"):
        done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                              check=False)
        found.append(done.stdout.strip())
    found += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
                    reverse=True)
    for folder in found:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def unavailable(why: str) -> None:
    if os.environ.get("NEWSLETTER_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{why} but NEWSLETTER_REQUIRE_POSTGRES=1")
    pytest.skip(f"{why} (CI sets NEWSLETTER_REQUIRE_POSTGRES=1)")


class Cluster:
    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        from tests.conftest import free_port

        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="newsletter-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.as_root = os.geteuid() == 0
        self.names = itertools.count(1)
        self.durable = durable  # fsync and synchronous commits as configured by default

    def start(self) -> None:
        admin_pw = self.root / "pw"
        admin_pw.write_text(self.password + "\n", encoding="utf-8")
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(admin_pw, "postgres", "postgres")
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                 "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256",
                 f"--pwfile={admin_pw}", *([] if self.durable else ["--no-sync"]))
        # a test cluster: durability off, enough connections for two servers' pools
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=200")
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                 "-t", "60", "-o", options, "start")
        with self.admin() as db:
            db.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}' CREATEDB")
            db.execute(f"CREATE DATABASE {TEMPLATE} OWNER {ROLE}")
        self.migrate_template()

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              timeout=120, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")

    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(host=str(self.root), port=self.port, user="postgres",
                               dbname="postgres", autocommit=True)

    def url(self, database: str) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def migrate_template(self) -> None:
        from newsletter.store import Store

        before = os.environ.get("PGPASSWORD")
        os.environ["PGPASSWORD"] = self.password
        try:
            Store(self.url(TEMPLATE)).close()
        finally:
            if before is None:
                del os.environ["PGPASSWORD"]
            else:
                os.environ["PGPASSWORD"] = before

    def new_database(self, *, empty: bool = False) -> str:
        """A fresh database: migrated (a copy of the template), or `empty`."""
        name = f"t{os.getpid()}_{next(self.names)}"
        with self.admin() as db:
            template = "template0" if empty else TEMPLATE
            db.execute(f"CREATE DATABASE {name} OWNER {ROLE} TEMPLATE {template}")
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self.admin() as db:
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        try:
            self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> Iterator[Cluster]:
    """The session's cluster (a generator for a session fixture)."""
    found = bindir()
    if found is None:
        unavailable("PostgreSQL binaries (initdb, pg_ctl) not found")
        return
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        unavailable("running as root without runuser to become postgres")
        return
    cluster = Cluster(found)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"], name="store_backend")
def both_backends(request: pytest.FixtureRequest) -> str:
    """Import this into a test module to run its store-using tests on both backends."""
    return str(request.param)


def empty_store(settings: Any) -> None:
    """Start the site's store over: delete the SQLite file, or every subscriber and
    edition on PostgreSQL."""
    from newsletter.store import Store

    if not settings.store_url:
        settings.store_path.unlink()
        return
    with Store(settings.store_location) as store, store.write() as db:
        for table in ("bounces", "signups", "deliveries", "variants", "editions",
                      "subscribers"):
            db.execute(f"DELETE FROM {table}")


class JournalLock:
    """Another process holding the store's write lock: SQLite's `BEGIN IMMEDIATE`, or on
    PostgreSQL a transaction locking the journal table against writes."""

    def __init__(self, settings: Any) -> None:
        import sqlite3

        self.url, self.held = settings.store_url, False
        if self.url:
            import psycopg

            self.db: Any = psycopg.connect(self.url, autocommit=True)
        else:
            self.db = sqlite3.connect(settings.store_path, isolation_level=None,
                                      check_same_thread=False)

    def take(self) -> None:
        self.held = True
        if self.url:
            self.db.execute("BEGIN")
            self.db.execute("LOCK TABLE deliveries IN EXCLUSIVE MODE")
        else:
            self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.held:
            self.db.execute("ROLLBACK")
        self.held = False

    def close(self) -> None:
        self.release()
        self.db.close()


# for modules where only some tests touch what differs between the stores
both_stores = pytest.mark.parametrize("store_backend", ["sqlite", "postgresql"])
