#!/bin/bash
# imaptest's stress run (random commands from many clients, every reply checked against
# its model of the mailbox) against the portcullis binary and Dovecot 2.3 in the same
# run, both with a slow password hash: portcullis with its defaults (argon2id 64 MiB and
# its verified-login cache), Dovecot with {SHA512-CRYPT} (SCHEME=ARGON2ID: its default
# argon2id, 64 MiB and 3 passes) in a passwd-file and its auth cache on. Dovecot's cache
# keeps the passdb's answer, not the verification: each of its logins still hashes. 20 users, the same mbox (800 messages of the SpamAssassin corpus), SECS seconds,
# 10 and 50 clients; prints imaptest's totals for both, logins and commands per second
# and the ratios, and every error or warning imaptest reported.
# Needs dovecot-imapd and imaptest (scripts/install-test-deps.sh builds it into
# .cache/imaptest; PORTCULLIS_IMAPTEST elsewhere) and the corpus in .cache/sa-corpus.
# Usage: [SECS=30] [CLIENTS="10 50"] [SCHEME=SHA512-CRYPT] [KEEP=1] bench/imapstress.sh
set -euo pipefail
SECS=${SECS:-30}
CLIENTS=${CLIENTS:-10 50}
USERS=20
cd "$(dirname "$0")/.."
. bench/lib.sh
ROOT=$(git rev-parse --path-format=absolute --git-common-dir)/..
IMAPTEST=${PORTCULLIS_IMAPTEST:-$ROOT/.cache/imaptest}
SA=$ROOT/.cache/sa-corpus
[ -x "$IMAPTEST/run" ] || { echo "imaptest not built in $IMAPTEST" >&2; exit 1; }
[ -d "$SA/train/ham" ] || { echo "no SpamAssassin corpus in $SA" >&2; exit 1; }
W=$(bench_workdir imapstress)
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; [ -f $W/run/master.pid ] && kill $(cat $W/run/master.pid) 2>/dev/null; wait 2>/dev/null; sleep 1; [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"' EXIT
go build -o "$W/portcullis" ./cmd/portcullis

# The mbox: 400 ham and 400 spam messages, ">From " quoted. Those whose Message-ID is
# not <left@right> are left out: imaptest checks the server's ENVELOPE against its own
# parse, and reports them as the server's errors (Dovecot's too).
python3 - "$SA" "$W/stress.mbox" <<'PY'
import os, re, sys
sa, mbox = sys.argv[1:3]
with open(mbox, "wb") as out:
    for sub in ("train/ham", "train/spam"):
        d = os.path.join(sa, sub)
        n = 0
        for name in sorted(os.listdir(d)):
            if n == 400:
                break
            b = open(os.path.join(d, name), "rb").read()
            head = b.split(b"\n\n", 1)[0]
            ids = re.findall(rb"(?im)^message-id:[ \t]*(.*(?:\n[ \t].*)*)", head)
            if len(ids) != 1 or not re.fullmatch(rb"\s*<[^<>@\s]+@[^<>@\s]+>\s*", ids[0]):
                continue
            n += 1
            out.write(b"From corpus@example.test Thu Jan  1 00:00:00 2015\n")
            for line in b.splitlines(keepends=True):
                out.write(b">" + line if line.startswith(b"From ") else line)
            if not b.endswith(b"\n"):
                out.write(b"\n")
PY

P_PORT=21343
D_PORT=21344
PASS=stress-secret

# portcullis: its defaults but for the addresses, plaintext LOGIN on loopback (trusted)
# and the per-address limits (every client comes from 127.0.0.1, as for Dovecot below).
cat > "$W/portcullis.yaml" <<YAML
hostname: mx.bench.example
data_dir: $W/data
local_domains: [bench.example]
postmaster: postmaster@bench.example
http: { addr: "" }
log: { level: warn }
pop3: { addr: "" }
managesieve: { addr: "" }
smtp:
  listeners:
    - { name: mx, addr: "127.0.0.1:0", mode: mx }
imap:
  addr: "127.0.0.1:$P_PORT"
  trusted: true
  max_connections_per_ip: -1
  max_login_connections: -1
  max_user_ip_connections: -1
YAML
for i in $(seq 1 $USERS); do
  echo "$PASS" | "$W/portcullis" --config "$W/portcullis.yaml" user add "test$i@bench.example" --password-stdin >/dev/null
done
"$W/portcullis" serve --config "$W/portcullis.yaml" 2>"$W/portcullis.log" &
PID=$!

# Dovecot: maildir, a slow scheme in a passwd-file, auth cache on, pre-started reused
# processes (as bench/imap.sh).
mkdir -p "$W/dovecot" "$W/run" "$W/state"
chown 65534:65534 "$W/dovecot"
HASH=$(doveadm pw -s "${SCHEME:-SHA512-CRYPT}" -p "$PASS")
: > "$W/passwd"
for i in $(seq 1 $USERS); do echo "test$i@bench.example:$HASH" >> "$W/passwd"; done
dovecot_imap_conf "$W" "$D_PORT" "  driver = passwd-file
  args = $W/passwd" "auth_cache_size = 10M
auth_cache_ttl = 1 hour" > "$W/dovecot.conf"
dovecot -c "$W/dovecot.conf"
for port in $P_PORT $D_PORT; do
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.2
  done
done

# stress NAME PORT CLIENTS: one imaptest run; prints its totals line and problems.
stress() {
  local name=$1 port=$2 n=$3 out="$W/$1-$3.out"
  (cd "$W" && "$IMAPTEST/run" host=127.0.0.1 port=$port user="test%d@bench.example" pass="$PASS" \
    users=$USERS clients=$n secs=$SECS mbox="$W/stress.mbox" >"$out" 2>&1) || true
  local t
  t=$(imaptest_totals "$out" "$SECS")
  echo "$name clients=$n ${t%%$'\n'*}"
  [[ "$t" != *$'\n'* ]] || echo "${t#*$'\n'}"
}

for n in $CLIENTS; do
  p=$(stress portcullis $P_PORT $n)
  d=$(stress dovecot $D_PORT $n)
  echo "$p"; echo "$d"
  pl=$(echo "$p" | sed -n 's/.*logins_per_sec=\([0-9]*\).*/\1/p'); dl=$(echo "$d" | sed -n 's/.*logins_per_sec=\([0-9]*\).*/\1/p')
  pc=$(echo "$p" | sed -n 's/.*commands_per_sec=\([0-9]*\).*/\1/p'); dc=$(echo "$d" | sed -n 's/.*commands_per_sec=\([0-9]*\).*/\1/p')
  [ -n "$pl" ] && [ -n "$dl" ] && [ "$dl" != 0 ] && echo "clients=$n ratio_logins=$(echo "scale=2; $pl / $dl" | bc) ratio_commands=$(echo "scale=2; $pc / $dc" | bc)"
done
# The log's warnings and errors but the one about running as root (the bench does).
if grep -i "level=\(warn\|error\)" "$W/portcullis.log" | grep -qv "RUNNING AS ROOT"; then
  echo "portcullis log:"; grep -i "level=\(warn\|error\)" "$W/portcullis.log" | grep -v "RUNNING AS ROOT" | head -20
fi
echo "dovecot $(dovecot --version) scheme=${SCHEME:-SHA512-CRYPT}"
