"""deploy/: the systemd unit verifies and is hardened (`systemd-analyze security` 3.0 or
below), and the sysusers.d file makes the user it runs as. Where systemd's tools are
missing, the tests skip with the reason."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNIT = DEPLOY / "mailcircle.service"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        print(f"skipping: {name} is not installed (systemd's tools)")
        pytest.skip(f"{name} is not installed (systemd's tools)")
    return found


def runnable_unit(folder: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's own `mailcircle` (verify checks
    that the program exists); every other line exactly as shipped."""
    text = UNIT.read_text()
    assert "ExecStart=/opt/mailcircle/.venv/bin/mailcircle serve" in text
    program = Path(sys.executable).parent / "mailcircle"
    unit = folder / "mailcircle.service"
    unit.write_text(text.replace("/opt/mailcircle/.venv/bin/mailcircle", str(program)))
    return unit


def test_the_unit_keeps_its_state_private() -> None:
    lines = set(UNIT.read_text().splitlines())
    for setting in (
        "StateDirectory=mailcircle",
        "UMask=0077",
        "User=mailcircle",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
    ):
        assert setting in lines, setting


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    done = subprocess.run(
        [analyze, "verify", str(runnable_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "mailcircle.service" not in done.stderr, done.stderr  # no complaint about it


def test_the_unit_scores_3_or_below_in_systemd_analyze_security(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    helped = subprocess.run(
        [analyze, "security", "--help"], capture_output=True, text=True, check=False
    )
    if "--offline" not in helped.stdout:
        print("skipping: this systemd-analyze cannot rate a unit file offline (systemd < 250)")
        pytest.skip("this systemd-analyze cannot rate a unit file offline (systemd < 250)")
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(runnable_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for mailcircle\.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 3.0, done.stdout


def test_sysusers_makes_the_user_the_unit_runs_as(tmp_path: Path) -> None:
    sysusers = tool("systemd-sysusers")
    if os.geteuid() != 0:
        print("skipping: systemd-sysusers --root needs root")
        pytest.skip("systemd-sysusers --root needs root")
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        [sysusers, f"--root={tmp_path}", str(DEPLOY / "mailcircle.sysusers.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [user] = [
        line.split(":")
        for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
        if line.startswith("mailcircle:")
    ]
    assert user[5:] == ["/var/lib/mailcircle", "/usr/sbin/nologin"]
    assert "mailcircle:" in (tmp_path / "etc" / "group").read_text()
