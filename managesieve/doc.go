// Package managesieve is a ManageSieve server (RFC 5804): users upload, list, activate,
// download, rename, check and delete their Sieve scripts, which delivery runs on their
// incoming mail. Commands: CAPABILITY, AUTHENTICATE (SASL PLAIN, only after STARTTLS
// unless the listener is trusted), STARTTLS, LOGOUT, NOOP, UNAUTHENTICATE, HAVESPACE,
// PUTSCRIPT, LISTSCRIPTS, SETACTIVE, GETSCRIPT, DELETESCRIPT, RENAMESCRIPT, CHECKSCRIPT;
// strings quoted or as literals ({N} and {N+}); the response codes QUOTA/MAXSCRIPTS,
// QUOTA/MAXSIZE, NONEXISTENT, ACTIVE, ALREADYEXISTS, WARNINGS, TRYLATER,
// ENCRYPT-NEEDED and TAG.
//
// Scripts live in the user's store index (store.Scripts); PUTSCRIPT, CHECKSCRIPT and
// SETACTIVE validate them through a Checker, which portcullis serve implements with the
// same compiler delivery uses, so a stored script always runs. Passwords go to the same
// Authenticator as IMAP and POP3 (throttling and the verified-credential cache included);
// each listener has its own connection pool (internal/connlimit) with a login timeout.
//
// Interoperability: sieve-connect and Cyrus's sieveshell are tested against it. Cyrus's
// client accepts only a bare "OK" (or one with a response code), so successful responses
// carry no text.
package managesieve
