#!/usr/bin/env bash
# Everything the test suite needs on a fresh Debian/Ubuntu machine:
# - Dovecot, the real IMAP server the IMAP tests start on 127.0.0.1 (Debian's dovecot-imapd);
# - Chromium, which renders the HTML digest in a test (Debian's chromium);
# - Postfix, which a test runs as a private instance from deploy/postfix-main.cf.example
#   (Debian's postfix, installed with "No configuration": the machine's own mail is untouched);
# - OpenSSL's command line, which makes the DKIM keys the sender-verification tests sign with;
# - a virtual environment in .venv with mailcircle and its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
need=""
if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ]; then need="dovecot-imapd"; fi
if ! command -v chromium >/dev/null 2>&1; then need="$need chromium"; fi
if [ ! -x /usr/sbin/postfix ]; then need="$need postfix"; fi
if ! command -v openssl >/dev/null 2>&1; then need="$need openssl"; fi
if [ -n "$need" ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "Installing$( printf ' %s' $need ) (servers and a browser the tests run against)..."
  $sudo apt-get update -qq
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
