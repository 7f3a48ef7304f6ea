// Package access implements Postfix's SMTP access tables (access(5)) as a portcullis
// policy: check_client_access, check_reverse_client_hostname_access, check_helo_access,
// check_sender_access and check_recipient_access, over the table files an admin already
// has, loaded unchanged.
//
// Table types: a plain "key value" file (what postmap(1) would index: texthash:, hash:,
// btree:, lmdb: and cdb: all read the source file), cidr: (cidr_table(5)), and regexp: and
// pcre: (the engine of package headers). Lookups follow Postfix's smtpd_check.c: for an
// address the full address, the address without its extension, the domain and its parent
// domains (or ".domain" keys, per parent_domain_matches_subdomains), then "user@"; for a
// client the host name and its parents, then the address and its shorter prefixes
// ("1.2.3.4", "1.2.3", "1.2", "1"; for IPv6 the same at ":"). Pattern tables (cidr:,
// regexp:, pcre:) see only the full string, as in Postfix.
//
// The policy reports the action (OK, REJECT, DEFER, DEFER_IF_PERMIT, DUNNO, 4xx/5xx text,
// PREPEND, HOLD, DISCARD, WARN, FILTER, REDIRECT, ...) and the reply Postfix would send;
// rules decide what to do with it, so reject: "{{name.reply}}" reproduces Postfix. A table
// is re-read when its file changes (checked at most every check_interval) and on SIGHUP;
// a bad line is an error naming the file and the line.
package access
