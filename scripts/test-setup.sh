#!/usr/bin/env bash
# Everything the test suite needs on a fresh Debian/Ubuntu machine:
# - Dovecot, the real IMAP server the IMAP tests start on 127.0.0.1 (Debian's dovecot-imapd);
# - a virtual environment in .venv with mailcircle and its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "Installing dovecot-imapd (the IMAP server the tests run against)..."
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dovecot-imapd >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
