// Package directory answers what the multi-node mode needs to know about a user: whether
// they exist, their password hash, quota, the mail host (the back-end that holds their
// mailbox, the seeds' mailHost LDAP attribute), an optional state such as "moving", and
// their aliases. One small interface, Directory, with three implementations: Local over
// the single node's user database (every user lives "here"), Postgres (a shared table
// that several nodes read) and LDAP (attributes of the entries auth already binds
// against). Cache puts a bounded, time-limited memory in front of any of them, so that
// a change in the directory is honoured within its TTL (default 5 s).
//
// Postgres is also what portcullis user writes (Add, SetPasswordHash, SetQuota,
// AddAlias, DeleteAlias, SetMailHost, SetState, List): LDAP is read-only, and the local
// directory is the user database. Config.HostOf says how to reach a mail host (the
// hosts table, or the NAME:24/993/995 convention), for front-ends and user moves.
package directory
