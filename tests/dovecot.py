"""A real Dovecot IMAP server for tests: its own config in a temp folder, 127.0.0.1, a free port.

Dovecot's login process refuses to run as root, so when the tests run as root the mail
files belong to the unprivileged `nobody` and logins run as `dovenull`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "circle", "s3cret-for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Dovecot:
    def __init__(self) -> None:
        if not os.path.exists(DOVECOT):
            # In CI this must fail, never skip: .ci/run installs dovecot-imapd.
            pytest.fail(
                "Dovecot is not installed: run `bash scripts/test-setup.sh` "
                "(it installs Debian's dovecot-imapd)"
            )
        # Outside pytest's 0700 tmp folder, so the unprivileged mail user can reach it.
        self.root = Path(tempfile.mkdtemp(prefix="mailcircle-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        if os.geteuid() == 0:
            mail_user = pwd.getpwnam("nobody")
            login_user = "dovenull" if _user_exists("dovenull") else "nobody"
            internal_user = "dovecot" if _user_exists("dovecot") else "nobody"
        else:
            mail_user = pwd.getpwuid(os.getuid())
            login_user = internal_user = mail_user.pw_name
        self.mail = self.root / "mail"
        self.mail.mkdir()
        for sub in ("run", "state"):
            (self.root / sub).mkdir()
        if os.geteuid() == 0:
            os.chown(self.mail, mail_user.pw_uid, mail_user.pw_gid)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        self.config = self.root / "dovecot.conf"
        self.config.write_text(
            f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {internal_user}
mail_location = maildir:{self.mail}/%u
first_valid_uid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={self.mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"dovecot exited: {self.proc.stderr.read().decode()}\n{self.log()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"dovecot did not listen on {self.port}\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def sessions(self) -> list[int]:
        """Process ids of this Dovecot's IMAP sessions (children of its master process)."""
        if self.proc is None:
            return []
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                command = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid and b"imap" in command and b"login" not in command:
                found.append(int(stat.parent.name))
        return found

    def restart(self) -> int:
        """Stop and start again; IMAP sessions that outlive the master are ended too, as a
        real restart or a reboot ends them. The number of sessions that were open."""
        sessions = self.sessions()
        self.stop()
        for pid in sessions:  # only processes this Dovecot started, by id
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.start()
        return len(sessions)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
