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
