"""Throwaway mail servers for the tests: Postfix and Dovecot, each with its own config
under a temp folder, on loopback ports, started and stopped by the test session.

The Postfix instance accepts mail for TEST_DOMAIN and BOUNCE_DOMAIN only (nothing
leaves it: every other destination is the `error` transport), delivers known users to
Maildirs (virtual mailboxes) and, since unknown users are accepted at RCPT time, its own
virtual(8) delivery agent fails them and its bounce daemon writes real RFC 3464 DSNs to
the envelope sender: our VERP address, delivered to the bounce Maildir.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

TEST_DOMAIN = "test.example"
BOUNCE_DOMAIN = "bounce.example"
NOBODY = 65534

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60   1 pickup
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -    - proxymap
showq     unix  n - n -    - showq
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
virtual   unix  - n n -    - virtual
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.{domain}
mydomain = {domain}
myorigin = {domain}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_reject_unlisted_recipient = no
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
virtual_mailbox_domains = {domain}, {bounce_domain}
virtual_mailbox_maps = texthash:{root}/vmailbox
virtual_mailbox_base = {root}/mail
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{uid}
virtual_minimum_uid = 100
recipient_delimiter = +
default_transport = error:this test server sends nothing out
relay_transport = error:this test server sends nothing out
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0
biff = no
smtputf8_enable = no
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


@dataclass
class Postfix:
    root: Path
    port: int
    users: tuple[str, ...]
    bounce_users: tuple[str, ...] = ("bounces",)

    @property
    def config(self) -> Path:
        return self.root / "etc"

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / TEST_DOMAIN / user

    def bounce_maildir(self, user: str = "bounces") -> Path:
        return self.root / "mail" / BOUNCE_DOMAIN / user

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([program("postfix"), "-c", str(self.config), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    def start(self) -> None:
        self.root.chmod(0o755)  # the delivery agents run as other users
        self.config.mkdir(parents=True)
        (self.root / "queue").mkdir()
        (self.root / "data").mkdir()
        shutil.chown(self.root / "data", "postfix")
        mail = self.root / "mail"
        mail.mkdir()
        os.chown(mail, NOBODY, NOBODY)
        (self.config / "main.cf").write_text(MAIN_CF.format(
            root=self.root, domain=TEST_DOMAIN, bounce_domain=BOUNCE_DOMAIN, uid=NOBODY))
        (self.config / "master.cf").write_text(MASTER_CF.format(port=self.port))
        boxes = [f"{u}@{TEST_DOMAIN} {TEST_DOMAIN}/{u}/" for u in self.users]
        boxes += [f"{u}@{BOUNCE_DOMAIN} {BOUNCE_DOMAIN}/{u}/" for u in self.bounce_users]
        (self.root / "vmailbox").write_text("\n".join(boxes) + "\n")
        (self.root / "maillog").touch()
        done = self.postfix("start")
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed: {done.stdout}{done.stderr}{self.log()}")
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop the instance's master and wait (bounded) until it is gone."""
        pid_file = self.root / "queue" / "pid" / "master.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        self.postfix("stop")
        deadline = time.monotonic() + 15
        while pid and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def log(self) -> str:
        return (self.root / "maillog").read_text(errors="replace")


SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def program(name: str) -> str:
    """Where a server program is (sbin is often not on a user's PATH)."""
    return shutil.which(name, path=SBIN_PATH) or name


DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = newsletter-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{maildir}
mail_uid = {uid}
mail_gid = {uid}
first_valid_uid = 100
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={root}/home
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"""


@dataclass
class Dovecot:
    """An IMAP server over one Maildir (its INBOX), with one user and password."""

    root: Path
    port: int
    maildir: Path
    password: str = "imap-test-password"
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        home = self.root / "home"
        home.mkdir()
        os.chown(home, NOBODY, NOBODY)
        conf = self.root / "dovecot.conf"
        conf.write_text(DOVECOT_CONF.format(root=self.root, port=self.port, uid=NOBODY,
                                            maildir=self.maildir, password=self.password))
        self.process = subprocess.Popen([program("dovecot"), "-F", "-c", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port)
        except RuntimeError:
            self.stop()
            log = (self.root / "dovecot.log")
            raise RuntimeError("dovecot did not start: " + (
                log.read_text(errors="replace") if log.exists() else "")) from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
