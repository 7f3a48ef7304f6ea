#!/bin/bash
# Memory per idle IMAP connection: the portcullis binary (its config, not a test harness)
# holds LEVELS sessions in IDLE (200 users, plaintext LOGIN on loopback; TLS=1 over
# implicit TLS), and bench/cmd/imapidle reports the server's RSS per connection at each
# level, the goroutines, a heap profile per level (in the work directory, kept with
# KEEP=1), and that every session still answered DONE at the end.
# Usage: [LEVELS=2000,10000] [USERS=200] [TLS=1] [KEEP=1] bench/imapidle.sh
#
# The connection limits are lifted in the config (imap.max_connections and the per-IP,
# per-user and login limits: -1). A bound of 10,000 would be refused at start where the
# hard RLIMIT_NOFILE is 20,000, as on the machine this was measured on: the server
# budgets two descriptors per IMAP session (its socket and a message file a FETCH
# streams). The users' argon2 cost is lowered so that creating 200
# users takes seconds and no 64 MiB hash buffers sit in the server's RSS while it is
# measured (login speed is bench/imap.sh's business).
set -euo pipefail
LEVELS=${LEVELS:-2000,10000}
USERS=${USERS:-200}
cd "$(dirname "$0")/.."
. bench/lib.sh
# Both processes need a descriptor per session and some to spare.
ulimit -n "$(ulimit -Hn)"
W=$(bench_workdir imapidle)
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"' EXIT
go build -o "$W/portcullis" ./cmd/portcullis
(cd bench && go build -o "$W/imapidle" ./cmd/imapidle)

IMAP=127.0.0.1:21243
IMAPS=127.0.0.1:21244
HTTP=127.0.0.1:21245
cat > "$W/portcullis.yaml" <<YAML
hostname: mx.bench.example
data_dir: $W/data
local_domains: [bench.example]
postmaster: postmaster@bench.example
http: { addr: "$HTTP", pprof: true }
log: { level: warn }
pop3: { addr: "" }
managesieve: { addr: "" }
smtp:
  listeners:
    - { name: mx, addr: "127.0.0.1:0", mode: mx }
auth:
  users:
    argon2: { memory: 1MiB }
imap:
  addr: "$IMAP"
  tls_addr: "$IMAPS"
  trusted: true
  max_connections: -1
  max_connections_per_ip: -1
  max_login_connections: -1
  max_user_connections: -1
  max_user_ip_connections: -1
YAML
for i in $(seq 0 $((USERS - 1))); do
  echo secret | "$W/portcullis" --config "$W/portcullis.yaml" user add "user$i@bench.example" --password-stdin >/dev/null
done
"$W/portcullis" serve --config "$W/portcullis.yaml" 2>"$W/server.log" &
PID=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/${IMAP%:*}/${IMAP#*:}) 2>/dev/null && break
  sleep 0.2
done
ADDR=$IMAP; FLAG=""
if [ -n "${TLS:-}" ]; then ADDR=$IMAPS; FLAG=-tls; fi
"$W/imapidle" -addr "$ADDR" $FLAG -levels "$LEVELS" -users "$USERS" -server-pid $PID \
  -pprof "http://$HTTP/debug/pprof/" -profdir "$W"
grep -c . "$W/server.log" >/dev/null && { echo "server log (warnings):"; tail -5 "$W/server.log"; } || true
