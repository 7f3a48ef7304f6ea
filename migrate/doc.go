// Package migrate moves mail from an old mail system into portcullis: every folder of a
// user, with its hierarchy, special use and subscription, and every message with its exact
// bytes, flags and keywords, internal date and (where the source has one) POP3 unique-id
// and IMAP UID. Sources are an IMAP server (ImapSource, go-imap's client; an admin or
// master login reads any user), a Dovecot or Courier maildir (MaildirSource, with
// dovecot-keywords and dovecot-uidlist) and mbox files (MboxSource, with Status, X-Status
// and X-Keywords). The target is reached through the small Target interface this package
// owns; migrate/storetarget implements it over portcullis's store.
//
// A migration is exact and incremental. A State database (SQLite) records, per source
// folder, its UIDVALIDITY and, per copied message, the source id → target UID and the
// SHA-256 of the bytes. Run copies only what the state does not hold, so a second run
// copies nothing and the morning-after run copies only the new mail; SyncFlags carries
// flag changes over; Delete (strict mode) removes the target messages that are not at the
// source; ExpungeGone removes only the copies of messages expunged at the source since
// (a catch-up copy that carries deletions over).
//
// Why no duplicate after a crash: before a batch of messages is appended, each one's
// intent (its source id and the target folder's UIDNEXT at that moment) is committed to the
// state. An append that completed but whose UID was not recorded leaves a pending intent;
// the next run looks for it among the target messages with a UID at or above the recorded
// UIDNEXT that no other record claims, compares the SHA-256 of their bytes with the source
// message's, and adopts the match instead of copying again. A process killed at any point
// therefore leaves either no message (copied again) or one message (adopted), never two.
//
// Memory is bounded whatever the folder size: a message streams from the source into the
// target's append, hashed on the way; only the per-message metadata of one folder (about
// a hundred bytes each) is held.
package migrate
