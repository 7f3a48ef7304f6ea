package importrules

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/portcullis-mail/portcullis"

// deps returns the packages pkg links (go list -deps; tests excluded).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// rule: the packages named by from must not link any package that forbidden matches
// (a module-relative path, matching itself and everything below it, or a full import
// path prefix for third-party code).
type rule struct {
	from      []string
	forbidden []string
	why       string
}

var rules = []rule{
	{
		from:      []string{"./smtpd"},
		forbidden: []string{"auth", "store", "delivery", "imapd", "pop3d", "config", "decisionlog", "modernc.org/sqlite", "github.com/jackc/pgx/v5"},
		why:       "smtpd knows its collaborators by interfaces it owns (Spool, LocalDeliverer, Authenticator, RecipientValidator, DecisionRecorder)",
	},
	{
		from:      []string{"./examples/minimal-mx"},
		forbidden: []string{"auth", "store", "delivery", "config", "modernc.org/sqlite"},
		why:       "a minimal MX is an SMTP server, policies and a spool: no mailbox store, user database or SQLite",
	},
	{
		from:      []string{"./imapd", "./pop3d"},
		forbidden: []string{"auth", "delivery", "smtpd", "config"},
		why:       "the mailbox servers own their Authenticator interface",
	},
	{
		from:      []string{"./managesieve"},
		forbidden: []string{"auth", "delivery", "smtpd", "config", "sieve"},
		why:       "managesieve owns its Authenticator and its Checker (the compiler reaches it through cmd/portcullis)",
	},
	{
		from:      []string{"./auth", "./delivery/route", "./address"},
		forbidden: []string{"policy", "smtpd", "config"},
		why:       "addresses live in package address, not in the rule engine",
	},
	{
		from:      []string{"./address", "./bytesize", "./internal/mailheader", "./internal/groupsync", "./internal/ratelog", "./internal/connlimit"},
		forbidden: []string{""}, // nothing of portcullis but itself
		why:       "the small shared packages are leaves every other package may import",
	},
	{
		from:      []string{"./imapd/internal/wire"},
		forbidden: []string{"", "github.com/emersion"}, // nothing of portcullis, no go-imap
		why:       "the IMAP command parser reads bytes into commands: no store, no server, no go-imap",
	},
	{
		from:      []string{"./imapd/internal/inflate"},
		forbidden: []string{""}, // nothing of portcullis
		why:       "the DEFLATE decoder of COMPRESS is a leaf",
	},
	{
		from:      []string{"./sieve"},
		forbidden: []string{""}, // nothing of portcullis but itself
		why:       "the Sieve language is a leaf library: the delivery owns the Host it implements",
	},
	{
		from:      []string{"./policy"},
		forbidden: []string{"rbl", "spf", "dkim", "headers", "content", "bayes", "virus", "smtpd", "config", "store", "auth", "delivery"},
		why:       "the rule engine knows no concrete policy and no server",
	},
	{
		from:      []string{"./rbl", "./spf", "./dkim", "./headers", "./content", "./bayes", "./virus", "./access", "./greylist", "./ratelimit"},
		forbidden: []string{"smtpd", "imapd", "pop3d", "delivery", "store", "auth", "config", "cmd"},
		why:       "a policy never imports a server",
	},
	{
		from:      []string{"./migrate"},
		forbidden: []string{"store", "auth", "imapd", "pop3d", "smtpd", "delivery", "config", "cmd"},
		why:       "migrate reaches the store and the user database through interfaces it owns (Target, UserDB); migrate/storetarget adapts the store",
	},
	{
		from:      []string{"./policyd", "./milter"},
		forbidden: []string{"smtpd", "imapd", "pop3d", "delivery", "store", "auth", "spool", "config", "cmd"},
		why:       "the Postfix doors translate requests into a policy.Transaction and run the engine, nothing of the server",
	},
	{
		from:      []string{"./decisionlog/..."},
		forbidden: []string{"smtpd", "delivery", "store", "auth", "imapd", "pop3d", "config", "cmd", "rbl", "spf", "dkim", "headers", "content", "bayes", "virus"},
		why:       "the decision log knows policy types only; the servers hand it records through interfaces they own",
	},
	{
		from:      []string{"./directory", "./proxy", "./internal/proxylisten"},
		forbidden: []string{"config", "cmd", "smtpd", "imapd", "pop3d", "store", "delivery"},
		why:       "the directory and the proxy know users and sockets, not the servers they route to",
	},
	{
		from:      []string{"./internal/statedb"},
		forbidden: []string{"config", "cmd", "web", "quarantine", "auth", "directory", "smtpd"},
		why:       "the state database opens SQLite or PostgreSQL for its consumers; it knows none of them",
	},
	{
		from:      []string{"./delivery/mailhost"},
		forbidden: []string{"store", "delivery/local", "imapd", "pop3d", "smtpd", "auth/ldaptest", "config", "cmd"},
		why:       "a front-end's delivery reaches mailboxes only by LMTP to their back-end: it holds no store",
	},
	{
		from:      []string{"./delivery/...", "./spool", "./store/...", "./dnsx/...", "./policy/...", "./quarantine", "./web/..."},
		forbidden: []string{"config", "cmd", "smtpd"},
		why:       "library packages never import config or cmd",
	},
}

func TestImportRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, r := range rules {
		for _, from := range r.from {
			self := module + "/" + strings.TrimSuffix(strings.TrimPrefix(from, "./"), "/...")
			for _, d := range deps(t, from) {
				for _, f := range r.forbidden {
					bad := false
					switch {
					case f == "":
						bad = strings.HasPrefix(d, module+"/") && d != self && !strings.HasPrefix(d, self+"/")
					case strings.Contains(f, "."):
						bad = d == f || strings.HasPrefix(d, f+"/")
					default:
						p := module + "/" + f
						bad = d == p || strings.HasPrefix(d, p+"/")
					}
					if bad {
						t.Errorf("%s links %s: %s", from, d, r.why)
					}
				}
			}
		}
	}
}
