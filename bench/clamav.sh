#!/usr/bin/env bash
# Benchmarks `portcullis virus scan` (the virus package's clamd client) against clamdscan --stream.
#
# Both scan the same files (the SpamAssassin public corpus plus infected samples: EICAR as a
# plain file, in a MIME attachment and in a zip, and clamav-testfiles' clam.exe, clam.zip,
# clam.mail) through the same clamd, started here on loopback with a local signature
# database, in the same run, at concurrency 1 and 8. clamdscan's concurrency is N parallel
# invocations over a list split N ways; ours is one process with N workers. The tools
# alternate slice by slice (SLICE files each) so both see the same machine load; the rate is
# all files of ROUNDS passes over their total time, in messages per second, with the ratio
# ours/clamdscan. Both must find exactly the infected samples, with no errors.
#
# Usage: bench/clamav.sh    (env: ROUNDS=1, CONCURRENCY="1 8", TRANSPORT=tcp|unix, SLICE=500,
#                                 LIMIT=N to use only the first N corpus messages)
# Needs: clamd (clamav-daemon), clamdscan, clamav-testfiles, go, python3 (for the corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-1}
CONCURRENCY=${CONCURRENCY:-"1 8"}
TRANSPORT=${TRANSPORT:-tcp}
LIMIT=${LIMIT:-0}
TESTFILES=/usr/share/clamav-testfiles

for bin in clamd clamdscan go; do
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || { echo "clamav.sh: $bin is not installed" >&2; exit 1; }
done
CLAMD=$(command -v clamd || echo /usr/sbin/clamd)
[ -f "$TESTFILES/clam.exe" ] || { echo "clamav.sh: $TESTFILES missing (clamav-testfiles)" >&2; exit 1; }
corpus=${PORTCULLIS_SA_CORPUS:-.cache/sa-corpus}
if [ ! -d "$corpus/test/spam" ]; then
  bash ../shared/tools/sa-corpus.sh "$corpus" >/dev/null
fi

work=$(mktemp -d /tmp/clamav-bench.XXXXXX)
clamd_pid=
cleanup() {
  [ -n "$clamd_pid" ] && kill "$clamd_pid" 2>/dev/null && wait "$clamd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The scanner under test: `portcullis virus scan` (virus.ScanFiles).
go build -o "$work/portcullis" ./cmd/portcullis

# Local signature database: a body signature for EICAR, a hash signature for clam.exe
# (the same database as virus/clamdtest).
mkdir -p "$work/db" "$work/tmp" "$work/samples"
eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
printf 'Portcullis.Test.EICAR:0:*:%s\n' "$(printf '%s' "$eicar" | od -An -tx1 | tr -d ' \n')" >"$work/db/portcullis.ndb"
printf '%s:%s:Portcullis.Test.ClamExe\n' "$(md5sum <"$TESTFILES/clam.exe" | cut -d' ' -f1)" \
  "$(stat -c %s "$TESTFILES/clam.exe")" >"$work/db/portcullis.hdb"

# Infected samples.
printf '%s' "$eicar" >"$work/samples/eicar.com"
(cd "$work/samples" && python3 - "$eicar" <<'PY'
import base64, sys, zipfile
eicar = sys.argv[1].encode()
with zipfile.ZipFile("eicar.zip", "w") as z:
    z.writestr("eicar.com", eicar)
att = base64.encodebytes(eicar).decode().replace("\n", "\r\n")
open("eicar-mime.eml", "w", newline="").write(
    "From: a@example.org\r\nTo: b@example.net\r\nSubject: attached\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    "--b\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n" + att + "--b--\r\n")
PY
)
cp "$TESTFILES/clam.exe" "$TESTFILES/clam.zip" "$TESTFILES/clam.mail" "$work/samples/"
ninfected=$(ls "$work/samples" | wc -l)

find "$(cd "$corpus" && pwd)" -name '*.eml' | sort >"$work/corpus.list"
if [ "$LIMIT" -gt 0 ]; then head -n "$LIMIT" "$work/corpus.list" >"$work/c" && mv "$work/c" "$work/corpus.list"; fi
find "$work/samples" -type f | sort >>"$work/corpus.list"
nfiles=$(wc -l <"$work/corpus.list")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/clamd.conf" <<EOF
DatabaseDirectory $work/db
TemporaryDirectory $work/tmp
TCPSocket $port
TCPAddr 127.0.0.1
LocalSocket $work/clamd.sock
Foreground yes
LogFile $work/clamd.log
MaxThreads 12
MaxConnectionQueueLength 64
# Without this the second tool to scan a file hits clamd's cache of clean files.
DisableCache yes
EOF
"$CLAMD" -c "$work/clamd.conf" >"$work/clamd.out" 2>&1 &
clamd_pid=$!
if [ "$TRANSPORT" = unix ]; then
  addr=unix:$work/clamd.sock
  printf 'LocalSocket %s\n' "$work/clamd.sock" >"$work/clamdscan.conf"
else
  addr=tcp:127.0.0.1:$port
  printf 'TCPSocket %s\nTCPAddr 127.0.0.1\n' "$port" >"$work/clamdscan.conf"
fi
for _ in $(seq 1 300); do
  "$work/portcullis" virus ping --clamd "$addr" >/dev/null 2>&1 && break
  sleep 0.1
done
"$work/portcullis" virus ping --clamd "$addr"

now() { date +%s.%N; }

# Each run scans one slice of the list and prints: elapsed seconds, infected found, errors.
# ours: one process with C workers.
run_ours() {
  local c=$1 list=$2 t0 t1
  t0=$(now)
  xargs -a "$list" "$work/portcullis" virus scan --clamd "$addr" -j "$c" --infected >"$work/ours.out" 2>/dev/null || true
  t1=$(now)
  echo "$t0 $t1 $(grep -c ' FOUND$' "$work/ours.out") $(grep -c ': ERROR' "$work/ours.out")" |
    awk '{ printf "%.6f %d %d\n", $2 - $1, $3, $4 }'
}

# clamdscan: C invocations over the slice split C ways (round robin).
run_clamdscan() {
  local c=$1 list=$2 t0 t1
  rm -f "$work"/part.*
  split -n "r/$c" "$list" "$work/part."
  t0=$(now)
  ls "$work"/part.* | xargs -P "$c" -I{} sh -c \
    'clamdscan --stream --no-summary -i -c "$1" --file-list="$2" >"$2.out" 2>&1 || true' _ "$work/clamdscan.conf" {}
  t1=$(now)
  echo "$t0 $t1 $(cat "$work"/part.*.out | grep -c ' FOUND$') $(cat "$work"/part.*.out | grep -c 'ERROR')" |
    awk '{ printf "%.6f %d %d\n", $2 - $1, $3, $4 }'
}

# The list is cut into slices of SLICE files; ours and clamdscan alternate slice by slice
# (who goes first alternates too), so that a burst of load from other processes on the
# machine hits both about equally. Rates are total files / total time.
SLICE=${SLICE:-500}
split -l "$SLICE" "$work/corpus.list" "$work/slice."
# Warm up: the page cache (otherwise whoever reads a slice first pays the disk) and both
# tools' first connections.
xargs cat <"$work/corpus.list" >/dev/null
run_ours 1 "$work/slice.aa" >/dev/null
run_clamdscan 1 "$work/slice.aa" >/dev/null

echo "files: $nfiles ($ninfected infected), transport $TRANSPORT, clamd $("$CLAMD" --version), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s %16s %16s %8s\n' concurrency "ours msg/s" "clamdscan msg/s" ratio
declare -A ours_at
for c in $CONCURRENCY; do
  : >"$work/o"; : >"$work/t"
  i=0
  for _ in $(seq 1 "$ROUNDS"); do
    for sl in "$work"/slice.*; do
      if ((i++ % 2)); then
        run_clamdscan "$c" "$sl" >>"$work/t"; run_ours "$c" "$sl" >>"$work/o"
      else
        run_ours "$c" "$sl" >>"$work/o"; run_clamdscan "$c" "$sl" >>"$work/t"
      fi
    done
  done
  for f in o t; do
    read -r secs found errs < <(awk '{ s += $1; f += $2; e += $3 } END { printf "%.6f %d %d\n", s, f, e }' "$work/$f")
    if [ "$found" -ne $((ninfected * ROUNDS)) ] || [ "$errs" -ne 0 ]; then
      echo "clamav.sh: $f at concurrency $c found $found infected (want $((ninfected * ROUNDS))), $errs errors" >&2
      exit 1
    fi
    declare "rate_$f=$(awk -v n=$((nfiles * ROUNDS)) -v s="$secs" 'BEGIN { printf "%.1f", n / s }')"
  done
  ours_at[$c]=$rate_o
  printf '%-12s %16s %16s %8s\n' "$c" "$rate_o" "$rate_t" "$(awk -v a="$rate_o" -v b="$rate_t" 'BEGIN { printf "%.2f", a / b }')"
done
first=${CONCURRENCY%% *}
for c in $CONCURRENCY; do
  [ "$c" = "$first" ] && continue
  echo "scaling of ours, c$c / c$first: $(awk -v a="${ours_at[$c]}" -v b="${ours_at[$first]}" 'BEGIN { printf "%.2fx", a / b }')"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
