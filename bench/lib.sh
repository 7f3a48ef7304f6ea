# Shared by the bench scripts (source it): running a private Postfix instance.

# start_postfix DIR PORT: writes DIR/etc/master.cf with an smtpd on 127.0.0.1:PORT and
# starts the instance whose main.cf the caller wrote to DIR/etc/main.cf. postfix -c needs
# the default main.cf to list DIR/etc in alternate_config_directories (the Debian package
# installs none): the line is added only while Postfix starts, under the lock that
# delivery/relay/postfixtest uses too, and the file is restored after.
start_postfix() {
  local dir=$1 port=$2
  sed "s/^smtp      inet  n       -       y       -       -       smtpd/127.0.0.1:$port inet n - n - - smtpd/" \
    /usr/share/postfix/master.cf.dist > "$dir/etc/master.cf"
  (
    flock 9
    orig=""; existed=""
    if [ -e /etc/postfix/main.cf ]; then existed=1; orig=$(cat /etc/postfix/main.cf); fi
    cur=$(sed -n 's/^[[:space:]]*alternate_config_directories[[:space:]]*=[[:space:]]*//p' /etc/postfix/main.cf 2>/dev/null | tail -1 || true)
    printf '%s\nalternate_config_directories = %s %s\n' "$orig" "$cur" "$dir/etc" > /etc/postfix/main.cf
    rc=0; script -qc "postfix -c $dir/etc start" /dev/null >/dev/null || rc=$?
    if [ -n "$existed" ]; then printf '%s\n' "$orig" > /etc/postfix/main.cf; else rm -f /etc/postfix/main.cf; fi
    exit $rc
  ) 9>"${TMPDIR:-/tmp}/portcullis-postfix-main-cf.lock"
}

# stop_postfix DIR: stops the instance by its master's pid (postfix -c would need the
# default main.cf again).
stop_postfix() {
  local pid="$1/spool/pid/master.pid"
  [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
}

# bench_workdir NAME: prints a new work directory .cache/bench-NAME.XXXXXX, readable by
# the daemons' users. It is on the repository's file system, not /tmp: on some sandboxes
# /tmp is a different file system where creating a file costs ten times more, for every
# server. Run from the repository root.
# It fails (and prints nothing) when the directory cannot be made: a caller's W=$(...)
# under set -e then stops, instead of going on with W empty and writing under /.
bench_workdir() {
  mkdir -p .cache || return 1
  local w
  w=$(mktemp -d "$PWD/.cache/bench-$1.XXXXXX") && [ -d "$w" ] || return 1
  chmod 755 "$w" || return 1
  echo "$w"
}

# postfix_main_cf DIR: prints the main.cf lines every bench's private Postfix shares:
# queue and data under DIR, loopback only, no DNS and no peer name lookup, no client
# limits, 32 MiB messages, its log in DIR/maildir. The caller appends its delivery.
postfix_main_cf() {
  local dir=$1
  cat <<CF
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/lib
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
message_size_limit = 33554432
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
CF
}

# portcullis_config DATA PORT: prints the config every bench's portcullis shares: data in
# DATA, the local domain example.test, an MX listener on 127.0.0.1:PORT, no IMAP or POP3,
# and a resolver on a closed loopback port (lookups fail at once, the machine's resolver
# is never asked). The caller appends its own keys (http: among them).
portcullis_config() {
  cat <<CF
hostname: bench.example.test
data_dir: $1
local_domains: [example.test]
imap: { addr: "" }
pop3: { addr: "" }
managesieve: { addr: "" }
dns: { servers: ["127.0.0.1:9"], timeout: 1s, attempts: 1 }
smtp:
  listeners: [ { name: mx, addr: "127.0.0.1:$2", mode: mx } ]
  max_connections_per_ip: 100
CF
}

# wait_port PORT [NAME PID LOG]: waits until PORT on 127.0.0.1 accepts connections; fails
# after 30 s, or at once when PID exits first, showing the end of LOG.
wait_port() {
  for _ in $(seq 150); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    [ -z "${3:-}" ] || kill -0 "$3" 2>/dev/null || break
    sleep 0.2
  done
  echo "$(basename "$0"): ${2:-a server} never opened port $1" >&2
  [ -z "${4:-}" ] || tail -5 "$4" >&2
  exit 1
}

# dovecot_imap_conf DIR PORT PASSDB [EXTRA]: prints a Dovecot 2.3 config serving IMAP on
# 127.0.0.1:PORT from maildirs under DIR/dovecot, its run and state under DIR, with the
# passdb block PASSDB (the password scheme is what the benches vary) and EXTRA lines.
# Dovecot forks an imap process per session; under load a fork made a login take 1 s
# (6 s at 200 clients). Reused, pre-started processes (service_count = 0,
# process_min_avail) bring that to about 60 ms, so Dovecot runs at its best here.
dovecot_imap_conf() {
  cat <<CONF
base_dir = $1/run
state_dir = $1/state
log_path = $1/dovecot.log
ssl = no
listen = 127.0.0.1
protocols = imap
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:$1/dovecot/%u/Maildir
mail_max_userip_connections = 10000
default_process_limit = 1000
default_client_limit = 20000
default_vsz_limit = 0
first_valid_uid = 1
${4:-}
passdb {
$3
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$1/dovecot/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $2
  }
  service_count = 0
  process_min_avail = 2
}
service imap {
  process_limit = 1000
  service_count = 0
  process_min_avail = 64
}
CONF
}

# imaptest_totals FILE [SECS]: reads the output of an imaptest run and prints one line,
# "logins=N commands=N errors=N warnings=N" (commands: the sum of the totals of every
# command column; with SECS also logins_per_sec and commands_per_sec), then the first 20
# lines that report a problem, indented. Without totals (imaptest failed) the line is
# "no totals" and the end of its output.
imaptest_totals() {
  python3 - "$1" "${2:-0}" <<'PY'
import re, sys
path, secs = sys.argv[1], float(sys.argv[2])
lines = open(path, errors="replace").read().splitlines()
# After "Totals:": the column names, percentage lines, then the totals.
cols, tot = [], None
for i, l in enumerate(lines):
    if l.strip().startswith("Totals:"):
        for m in lines[i + 1:]:
            f = m.split()
            if f[:1] == ["Logi"]:
                cols = f
            elif cols and f and all(x.isdigit() for x in f):
                tot = f
                break
if not tot or len(tot) < len(cols):
    print(f"no totals; output in {path}: {lines[-3:]}")
    sys.exit(0)
problems = [l for l in lines if re.search(r"^(Error|Warning|Panic|Fatal)|error|warning", l, re.I) and "Totals" not in l]
errors = sum(1 for l in problems if re.search(r"error|panic|fatal", l, re.I))
vals = dict(zip(cols, (int(x) for x in tot[:len(cols)])))
logins, cmds = vals.get("Logi", 0), sum(vals.values())
rate = f" logins_per_sec={logins/secs:.0f} commands_per_sec={cmds/secs:.0f}" if secs else ""
print(f"logins={logins} commands={cmds} errors={errors} warnings={len(problems) - errors}{rate}")
for l in problems[:20]:
    print("   ", l[:200])
PY
}

# start_postgres DIR PORT [DATABASE...]: a private PostgreSQL, run as the postgres user,
# its cluster in DIR/pg (superuser portcullis, trust, no fsync: a bench, not a store),
# listening on 127.0.0.1:PORT, and the DATABASEs created. Sets PGBIN and PGPID; the
# caller's EXIT trap runs stop_postgres DIR.
start_postgres() {
  local dir=$1 port=$2 db
  shift 2
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  mkdir -p "$dir/pg" && chown postgres "$dir/pg"
  runuser -u postgres -- "$PGBIN/initdb" -D "$dir/pg/data" -U portcullis --auth=trust --no-sync >/dev/null
  runuser -u postgres -- "$PGBIN/postgres" -D "$dir/pg/data" -p "$port" -k "$dir/pg" -c listen_addresses=127.0.0.1 \
    -c fsync=off -c synchronous_commit=off -c max_connections=200 2>"$dir/pg.log" &
  PGPID=$!
  wait_port "$port" postgres $PGPID "$dir/pg.log"
  # The port opens before the server accepts logins: psql retries until it does.
  for _ in $(seq 50); do
    psql -q -h 127.0.0.1 -p "$port" -U portcullis -d postgres -c "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.2
  done
  for db; do psql -q -h 127.0.0.1 -p "$port" -U portcullis -d postgres -c "CREATE DATABASE $db"; done
}

# stop_postgres DIR: stops the PostgreSQL start_postgres started, if it did.
stop_postgres() {
  [ -n "${PGPID:-}" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$1/pg/data" stop -m fast >/dev/null 2>&1 || true
}
