// Package web is the page where users see what the server quarantined (and, with a
// decision log, what it decided) for them and act on it, and where admins see it all.
//
// It is an http.Handler to mount on the server's HTTP listener. Users log in with their
// mail account through the same Authenticator as IMAP (its throttling included); a
// session lives on the server, in the State database (SQLite, or the PostgreSQL database
// several nodes share), named by a random token in an HttpOnly, SameSite=Strict cookie
// (Secure under TLS) of which the database keeps only the SHA-256. A session ends at
// logout, after its lifetime or idle timeout, and when its user's credentials change
// (Credentials: a password changed, the account deleted). When the credentials cannot be
// read (the directory is down), a session verified within Config.DirectoryGrace goes on
// unchecked and the others, and new logins, get a 503 page; the check resumes, and ends
// the sessions of a password changed meanwhile, once the directory answers. Every form
// carries the session's CSRF token and every POST
// checks it; the login form, before any session, uses a double-submit cookie. Pages are
// html/template, so every value from mail is escaped; the Content-Security-Policy allows
// only the page's own stylesheet and script (no inline script), forbids framing, and
// the pages work without JavaScript. Charts are SVG drawn on the server
// (web/internal/svgchart).
//
// Authorization is by address: a user sees a quarantined item when its recipient is one
// they own (their address, an alias that delivers to them: the Owner interface, which the
// router implements), and an admin (Config.Admins) sees every item. Every handler checks
// it on the item it touches, not only on the list that linked there.
//
// An item addressed to an alias that several users share belongs to that address, as in
// Proxmox Mail Gateway's quarantine, where a user sees the items of every address of
// theirs: any of them may release it (the copy goes to the alias, so each member gets
// it as accepted mail would have reached them) or delete it (for all). The sender lists
// are per user: a user's allow or block goes on their own list; an admin's on another
// user's item goes on the lists of the users the recipient delivers to (ListOwners),
// the lists the rules read.
//
// Digest links (tickets) are bearer credentials lying in a mailbox, bounded as a
// password-reset link: HMAC-signed, valid Config.TicketLifetime, once (their ids are
// recorded in State), only while the account keeps the password it had, and never for
// the admin role.
//
// The key that signs them, from which the sessions' CSRF tokens are also derived, is in
// Config.SecretFile, never in State: a copy of the database (a backup, a read of the
// shared PostgreSQL tables) holds only hashes of tokens and a key id, and can neither
// sign a link nor know a form's token. The file's format, rotation and the upgrade from
// the versions that kept the key in the database are described in secret.go.
package web
