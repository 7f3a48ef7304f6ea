#!/usr/bin/env bash
# Installs what the test suite and the benchmarks need: Debian packages for the real peers
# (clamd, Dovecot, Postfix, slapd, swaks, mbsync, fetchmail, bogofilter, Chromium, the
# ManageSieve clients), staticcheck, the
# SpamAssassin public corpus and Dovecot's imaptest. Idempotent: a second run installs only
# what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(swaks libnet-ssleay-perl libio-socket-ssl-perl clamav-daemon clamav-testfiles clamdscan dovecot-core dovecot-lmtpd dovecot-imapd
      dovecot-pop3d dovecot-managesieved postfix postfix-pcre slapd ldap-utils isync fetchmail bogofilter sqlite3 python3 bc bind9-utils
      postgresql pflogsumm dovecot-sieve chromium postgrey miltertest rspamd redis-server sieve-connect cyrus-admin
      dovecot-dev build-essential autoconf automake libtool pkg-config) # the last six build imaptest
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-test-deps: installing ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages start their system daemons; the tests start their own on loopback.
  for s in clamav-daemon clamav-freshclam dovecot postfix slapd postgresql postgrey rspamd redis-server; do
    $SUDO service "$s" stop >/dev/null 2>&1 || true
  done
fi

if ! command -v staticcheck >/dev/null && [ ! -x "$(go env GOPATH)/bin/staticcheck" ]; then
  echo "install-test-deps: installing staticcheck" >&2
  go install honnef.co/go/tools/cmd/staticcheck@latest
fi

# The SpamAssassin public corpus, exported once into .cache/ (gitignored).
if [ ! -d .cache/sa-corpus/test/spam ]; then
  echo "install-test-deps: exporting the SpamAssassin corpus" >&2
  bash ../shared/tools/sa-corpus.sh .cache/sa-corpus >/dev/null
fi

# Dovecot's imaptest (IMAP compliance tester), built once into .cache/imaptest (gitignored),
# where cmd/portcullis TestImaptest looks for it. Its wrapper (run) names the binary by
# absolute path: a cache copied from another checkout (a worktree since removed) runs
# nothing, and the imaptest tests fail ("printed no totals"); build it again then.
if [ -f .cache/imaptest/run ] && ! grep -qF "\"$PWD/.cache/imaptest/imaptest\"" .cache/imaptest/run; then
  rm -f .cache/imaptest/run
fi
if [ ! -x .cache/imaptest/run ] || [ ! -d .cache/imaptest/tests ]; then
  echo "install-test-deps: building imaptest" >&2
  bash ../shared/tools/imaptest/build.sh "$PWD/.cache/imaptest" >/dev/null
fi
