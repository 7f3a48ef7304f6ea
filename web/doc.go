// Package web is the page where users see what the server quarantined (and, with a
// decision log, what it decided) for them and act on it, and where admins see it all.
//
// It is an http.Handler to mount on the server's HTTP listener. Users log in with their
// mail account through the same Authenticator as IMAP (its throttling included); a
// session lives on the server, named by a random id in an HttpOnly, SameSite=Strict
// cookie (Secure under TLS). Every form carries the session's CSRF token and every POST
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
package web
