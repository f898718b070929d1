"""A real, private Postfix for tests: its own config, queue and data directories in a temp
folder, smtpd on a free 127.0.0.1 port, configured from deploy/postfix-main.cf.example.

The instance stands for an operator's existing Postfix: it already delivers its users'
domain (members.example.net) to maildirs as virtual mailboxes. The example's lines are
appended exactly as an operator would add them, with only mailcircle's LMTP port filled in.
Postfix must start as root (its master drops to the `postfix` user); elsewhere the tests
that need it skip with the reason, and in CI (CI=true) they fail, as scripts/test-setup.sh
installs Debian's postfix there.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "postfix-main.cf.example"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
CIRCLE_DOMAIN = "circles.example.org"  # as written in the example
MEMBER_DOMAIN = "members.example.net"
EXAMPLE_LMTP = "127.0.0.1:8024"  # the example's placeholder for mailcircle's LMTP address

# The daemons a small Postfix needs, none chrooted (the temp folder is not a chroot jail).
MASTER_CF = """\
{smtpd_listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail in CI, where Postfix is installed and tests run as root."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true, so this fails instead of skipping)")
    print(f"skipping: {reason}")
    pytest.skip(reason)


def example_lines(lmtp_port: int) -> str:
    """deploy/postfix-main.cf.example with mailcircle's LMTP port filled in, nothing else."""
    text = EXAMPLE.read_text()
    assert EXAMPLE_LMTP in text, f"{EXAMPLE} no longer names {EXAMPLE_LMTP}"
    return text.replace(EXAMPLE_LMTP, f"127.0.0.1:{lmtp_port}")


class Postfix:
    def __init__(self, lmtp_port: int, members: tuple[str, ...]) -> None:
        if not os.path.exists(POSTFIX):
            unavailable(
                "Postfix is not installed: run `bash scripts/test-setup.sh` "
                "(it installs Debian's postfix)"
            )
        if os.geteuid() != 0:
            unavailable("a private Postfix instance must be started as root")
        try:
            owner = pwd.getpwnam("postfix")
        except KeyError:
            unavailable("there is no `postfix` user (is Debian's postfix installed?)")
        # Outside pytest's 0700 tmp folder, so Postfix's unprivileged daemons can reach it.
        self.root = Path(tempfile.mkdtemp(prefix="mailcircle-postfix-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.config = self.root / "config"
        self.queue = self.root / "queue"
        self.data = self.root / "data"
        self.maildirs = self.root / "maildirs"
        self.maillog = self.root / "maillog"
        self.config.mkdir()
        self.queue.mkdir()
        for folder in (self.data, self.maildirs):
            folder.mkdir()
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        self.members = list(members)
        existing = f"""\
# --- this instance, and an operator's existing setup: members' mail in maildirs ---
compatibility_level = 3.6
config_directory = {self.config}
queue_directory = {self.queue}
data_directory = {self.data}
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
smtpd_peername_lookup = no
maillog_file = {self.maillog}
maillog_file_prefixes = {self.root}
virtual_mailbox_domains = {MEMBER_DOMAIN}
virtual_mailbox_base = {self.maildirs}
{self._mailboxes()}
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
virtual_minimum_uid = 1
"""
        self.lmtp_port = lmtp_port
        (self.config / "main.cf").write_text(
            existing + "\n# --- deploy/postfix-main.cf.example ---\n" + example_lines(lmtp_port)
        )
        (self.config / "master.cf").write_text(
            MASTER_CF.format(smtpd_listen=f"127.0.0.1:{self.port}")
        )

    def _mailboxes(self) -> str:
        pairs = ", ".join(f"{m}@{MEMBER_DOMAIN}={MEMBER_DOMAIN}/{m}/" for m in self.members)
        return f"virtual_mailbox_maps = inline:{{ {pairs} }}"

    def add_mailbox(self, member: str) -> None:
        """Give a member a mailbox and `postfix reload`, as an operator would: connections
        open before the reload keep talking to an smtpd with the old table."""
        main_cf = self.config / "main.cf"
        before = self._mailboxes()
        self.members.append(member)
        main_cf.write_text(main_cf.read_text().replace(before, self._mailboxes()))
        self._postfix("reload")

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [POSTFIX, "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)}: {done.stderr.strip()}\n{self.log()}")
        return done

    def start(self) -> None:
        try:
            self._postfix("start")
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
            self.cleanup()
            unavailable(f"Postfix could not be started: {err}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.settimeout(5)
                    if sock.recv(100).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.1)
        log = self.log()
        self.cleanup()
        unavailable(f"Postfix did not answer on 127.0.0.1:{self.port} within 20 s\n{log}")

    def maildir_files(self, member: str) -> list[Path]:
        new = self.maildirs / MEMBER_DOMAIN / member / "new"
        return sorted(new.iterdir()) if new.is_dir() else []

    def wait_for_mail(self, member: str, count: int = 1, timeout: float = 30.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = self.maildir_files(member)
            if len(files) >= count:
                return [f.read_bytes() for f in files]
            time.sleep(0.1)
        raise AssertionError(
            f"{member}@{MEMBER_DOMAIN} has {len(self.maildir_files(member))} mails, "
            f"expected {count} within {timeout:g}s\n--- maillog ---\n{self.log()}"
        )

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def stop(self) -> None:
        if self._postfix("stop", check=False).returncode != 0:
            self._postfix("abort", check=False)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
