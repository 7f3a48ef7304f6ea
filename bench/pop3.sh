#!/bin/bash
# POP3 logins per second beside IMAP's, through one portcullis process serving both over
# its default user database (argon2id hashes, the verified-credential cache on), then the
# same with the cache off (auth.verify_cache_ttl: -1), to show POP3 logins take the cache.
# Plaintext on trusted loopback listeners: the TLS handshake, the same for both, is left
# out. Prints a line per round and the totals, with the POP3/IMAP ratio.
# Usage: [CLIENTS=10] [USERS=20] [ROUNDS=3] [SEED=20] bench/pop3.sh [seconds per protocol]
set -eu
SECS=${1:-10}
cd "$(dirname "$0")/.."
. bench/lib.sh
W=$(bench_workdir pop3)
trap 'kill $PC_PID 2>/dev/null || true; wait 2>/dev/null; rm -rf "$W"' EXIT
PC_PID=
go build -o "$W/portcullis" ./cmd/portcullis
(cd bench && go build -o "$W/pop3load" ./cmd/pop3load)
USERS=${USERS:-20}
IMAP_PORT=21431 POP3_PORT=21110 MX_PORT=21425

for cache in on off; do
  ttl=""; [ $cache = off ] && ttl="auth: { users: { verify_cache_ttl: -1s } }"
  rm -rf "$W/data"
  { portcullis_config "$W/data" $MX_PORT | grep -v '^imap:\|^pop3:'
    cat <<CF
http: { addr: "" }
imap: { addr: "127.0.0.1:$IMAP_PORT", trusted: true, max_connections_per_ip: -1, max_login_connections: -1 }
pop3: { addr: "127.0.0.1:$POP3_PORT", trusted: true, max_connections_per_ip: -1, max_login_connections: -1 }
log: { level: warn }
$ttl
CF
  } > "$W/pc.yaml"
  for i in $(seq 0 $((USERS - 1))); do
    echo secret | "$W/portcullis" user add --config "$W/pc.yaml" --password-stdin "user$i@example.test" >/dev/null
  done
  "$W/portcullis" serve --config "$W/pc.yaml" 2>"$W/pc.log" &
  PC_PID=$!
  wait_port $POP3_PORT portcullis $PC_PID "$W/pc.log"
  wait_port $IMAP_PORT portcullis $PC_PID "$W/pc.log"
  echo "verify cache $cache:"
  "$W/pop3load" -imap 127.0.0.1:$IMAP_PORT -pop3 127.0.0.1:$POP3_PORT -users "$USERS" \
    -clients "${CLIENTS:-10}" -duration "${SECS}s" -rounds "${ROUNDS:-3}" -seed "${SEED:-20}" | sed 's/^/  /'
  kill $PC_PID; wait $PC_PID 2>/dev/null || true
done
