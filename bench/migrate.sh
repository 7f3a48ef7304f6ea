#!/bin/sh
# Migration benchmark, side by side in one run on one machine:
#  1. A folder of N small messages at a Dovecot IMAP source (default 100,000): messages per
#     second and peak RSS of `portcullis migrate imap`, against mbsync (isync, with
#     CopyArrivalDate) and `doveadm backup -R imapc:` (Dovecot's own migrator) pulling the
#     same folder; also the peak RSS of the Dovecot imap process serving each.
#  2. The SpamAssassin corpus (.cache/sa-corpus) imported as one mbox and as a maildir by
#     `portcullis migrate mbox|maildir`, against `doveadm import`.
# Needs dovecot-imapd, isync, python3, /usr/bin/time.
# Usage: [N=100000] [SIZES="10000 100000"] [SKIP_MBSYNC=1] [SKIP_DSYNC=1] [SKIP_CORPUS=1] bench/migrate.sh
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
SIZES=${SIZES:-${N:-100000}}
W=$(bench_workdir migrate)
PORT=21243
trap '[ -f $W/run/master.pid ] && kill $(cat $W/run/master.pid) 2>/dev/null; sleep 1; rm -rf $W' EXIT
go build -o $W/portcullis ./cmd/portcullis
echo secret > $W/pw

mkdir -p $W/run $W/state $W/src $W/dsync
chown 65534:65534 $W/src $W/dsync
cat > $W/dovecot.conf <<CONF
base_dir = $W/run
state_dir = $W/state
log_path = $W/dovecot.log
ssl = no
listen = 127.0.0.1
protocols = imap
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:$W/src/%u/Maildir
first_valid_uid = 1
default_vsz_limit = 0
passdb {
  driver = static
  args = password=secret
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$W/src/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
CONF
dovecot -c $W/dovecot.conf
sleep 1

# peak_rss_of NAME: samples the RSS (KiB) of processes called NAME until killed, prints the
# highest.
peak_rss_of() {
  max=0
  trap 'echo $max; exit 0' TERM
  while :; do
    for r in $(ps -o rss= -C "$1" 2>/dev/null); do [ "$r" -gt "$max" ] && max=$r; done
    sleep 0.2
  done
}

# timed LABEL N CMD...: runs CMD under /usr/bin/time while sampling Dovecot's imap RSS;
# prints one line.
timed() {
  label=$1 n=$2; shift 2
  peak_rss_of imap > $W/imap.rss & sampler=$!
  /usr/bin/time -f '%e %M' -o $W/time.out "$@" > $W/out.log 2>&1 || { echo "$label failed:"; tail -5 $W/out.log; }
  kill $sampler; wait $sampler 2>/dev/null || true
  read el rss < $W/time.out
  echo "$label messages=$n seconds=$el msgs_per_sec=$(echo "scale=0; $n / $el" | bc) peak_rss_mib=$((rss / 1024)) dovecot_imap_peak_rss_mib=$(( $(cat $W/imap.rss) / 1024 ))"
}

for N in $SIZES; do
  U=bench$N@example.test
  # The folder: N small messages written straight into the source maildir, then indexed
  # by Dovecot once, so that no tool pays for Dovecot's first scan.
  python3 - "$W/src/$U/Maildir" "$N" <<'PY'
import os, sys, time
root, n = sys.argv[1], int(sys.argv[2])
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(root, d), exist_ok=True)
base = 1600000000
for i in range(n):
    body = ("From: sender%d@example.net\r\nTo: bench@example.test\r\nSubject: message %d\r\n"
            "Message-ID: <%d@example.net>\r\nDate: Thu, 01 Oct 2020 10:00:00 +0000\r\n\r\n" % (i % 97, i, i)
            + "a line of a small message body\r\n" * (10 + i % 20))
    p = os.path.join(root, "cur", "%d.M%dP1.bench:2,%s" % (base + i, i, "S" if i % 3 else "FS"))
    with open(p, "w") as f:
        f.write(body)
    os.utime(p, (base + i, base + i))
PY
  chown -R 65534:65534 $W/src/$U
  doveadm -c $W/dovecot.conf index -u $U INBOX

  timed "portcullis-migrate-imap" $N $W/portcullis --data $W/pdata migrate imap --host 127.0.0.1:$PORT --security none --user $U --password-file $W/pw -q
  mkdir -p $W/mbsync$N
  cat > $W/mbsyncrc <<RC
IMAPAccount src
Host 127.0.0.1
Port $PORT
User $U
Pass secret
SSLType None
AuthMechs LOGIN

IMAPStore src
Account src

MaildirStore local
Path $W/mbsync$N/
Inbox $W/mbsync$N/INBOX

Channel c
Far :src:
Near :local:
Patterns INBOX
Create Near
Sync Pull
CopyArrivalDate yes
SyncState *
RC
  [ -n "${SKIP_MBSYNC:-}" ] || timed "mbsync" $N mbsync -c $W/mbsyncrc -q -a
  [ -n "${SKIP_DSYNC:-}" ] || timed "doveadm-backup-imapc" $N doveadm -c $W/dovecot.conf -o mail_location=maildir:$W/dsync/%u/Maildir \
    -o imapc_host=127.0.0.1 -o imapc_port=$PORT -o imapc_user=$U -o imapc_password=secret \
    -o imapc_features="rfc822.size fetch-headers" backup -R -u $U imapc:
  # A second portcullis run: nothing to copy, only the listing and the state.
  timed "portcullis-migrate-imap-rerun" $N $W/portcullis --data $W/pdata migrate imap --host 127.0.0.1:$PORT --security none --user $U --password-file $W/pw -q
  rm -rf $W/src/$U $W/mbsync$N $W/dsync/* $W/pdata/mail/example.test/bench$N
done

# The SpamAssassin corpus as one mbox and as one maildir.
SA=.cache/sa-corpus
[ -d $SA/train/spam ] || SA=$(git rev-parse --path-format=absolute --git-common-dir)/../.cache/sa-corpus
if [ -n "${SKIP_CORPUS:-}" ]; then
  :
elif [ -d $SA/train/spam ]; then
  mkdir -p $W/sa-maildir/cur $W/sa-maildir/new $W/sa-maildir/tmp
  mkdir -p $W/mboxroot
  python3 - "$SA" "$W/mboxroot/sa.mbox" "$W/sa-maildir" <<'PY'
import os, sys
sa, mbox, md = sys.argv[1:4]
n = 0
with open(mbox, "wb") as out:
    for sub in ("train/spam", "train/ham", "test/spam", "test/ham"):
        d = os.path.join(sa, sub)
        for name in sorted(os.listdir(d)):
            b = open(os.path.join(d, name), "rb").read()
            out.write(b"From corpus@example.test Thu Jan  1 00:00:00 2015\n")
            for line in b.splitlines(keepends=True):
                out.write(b">" + line if line.startswith(b"From ") else line)
            if not b.endswith(b"\n"):
                out.write(b"\n")
            out.write(b"\n")
            with open(os.path.join(md, "cur", "%d.M%d.sa:2,S" % (1400000000 + n, n)), "wb") as f:
                f.write(b)
            n += 1
print(n, file=open(os.path.join(os.path.dirname(md), "sa.count"), "w"))
PY
  n=$(cat $W/sa.count)
  chown -R 65534:65534 $W/sa-maildir $W/mboxroot
  timed "portcullis-migrate-mbox(sa-corpus)" $n $W/portcullis --data $W/pdata migrate mbox --target sa1@example.test $W/mboxroot/sa.mbox -q
  timed "doveadm-import-mbox(sa-corpus)" $n doveadm -c $W/dovecot.conf import -u sa1@example.test mbox:$W/mboxroot:INBOX=$W/mboxroot/sa.mbox sa ALL
  timed "portcullis-migrate-maildir(sa-corpus)" $n $W/portcullis --data $W/pdata migrate maildir --target sa2@example.test $W/sa-maildir -q
  timed "doveadm-import-maildir(sa-corpus)" $n doveadm -c $W/dovecot.conf import -u sa2@example.test maildir:$W/sa-maildir sa ALL
  # What Dovecot imported, to check that it did.
  for u in sa1 sa2; do echo "dovecot $u@example.test: $(doveadm -c $W/dovecot.conf mailbox status -u $u@example.test messages '*' | tr '\n' ' ')"; done
else
  echo "no SpamAssassin corpus (scripts/install-test-deps.sh exports it): corpus imports skipped"
fi
