// Package decisionlog keeps one record per SMTP transaction and recipient: who connected,
// what the envelope and the message header said, which stage decided, the verdict, the
// reply, the rule and its category, every policy's result, the queue id; and, joined
// later by queue id and recipient, what became of the message (delivered, deferred,
// bounced, discarded, quarantined). Connections refused before MAIL get one record too.
//
// It answers "what happened to the mail from my bank yesterday?": Query searches the
// records a Scope allows (a user's own addresses, or all for an admin) and pages through
// them with an opaque Cursor; Get returns one; BlockedByCategory, Traffic,
// ScoreHistogram and Top aggregate them for charts and for `portcullis report`.
//
// Writes never wait: Add and SetOutcome put the record in a bounded buffer that one
// goroutine writes in batches (one transaction per batch in SQLite, COPY in PostgreSQL).
// When the buffer is full the record is dropped, counted in
// portcullis_decisionlog_records_dropped_total and logged, so the SMTP reply is never delayed
// and no loss goes unseen. An accepted message's record waits in the writer up to
// half a minute (Config.OutcomeWait) for its delivery outcome, to be written once with it; like
// a buffered record it is in memory until then (Flush and Close write it). Records older
// than the retention are pruned in small batches so that pruning never holds the writer
// for long.
//
// The store is SQLite (modernc.org/sqlite, a file under the data directory) or, when a
// PostgreSQL DSN is configured, a PostgreSQL database that several front-end nodes share.
// Times are stored as UTC microseconds; aggregation buckets are UTC days, weeks (from
// Monday) and hours.
package decisionlog
