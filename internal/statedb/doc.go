// Package statedb opens the small state databases of the web page and the quarantine
// (sessions, used digest tickets, the page's signing key, sender lists, digest
// preferences): a SQLite file under the data directory by default, or, when the
// multi-node mode's shared PostgreSQL database is configured (directory.postgres), that
// database, so that a login, a used ticket and a user's lists are the same on every
// node. A consumer writes its queries once, with ? placeholders, in the SQL both
// engines share; DB rebinds them to $1, $2... for PostgreSQL.
package statedb
