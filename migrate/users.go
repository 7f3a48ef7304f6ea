package migrate

import (
	"context"
	"crypto/tls"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Account is a user to create: an address, the password hash of the old system (with its
// {SCHEME} prefix as Dovecot and OpenLDAP write it, or a bare crypt string), and the
// addresses that are aliases of it.
type Account struct {
	Address string
	Hash    string
	Aliases []string
}

// UserDB is where users are created (auth.DB).
type UserDB interface {
	Exists(ctx context.Context, address string) (bool, error)
	// AddHash creates a user with an existing hash.
	AddHash(ctx context.Context, address, hash string) error
	// Add creates a user with a password (hashed by the database).
	Add(ctx context.Context, address, password string) error
}

// UserResult says what happened to one account.
type UserResult struct {
	Address string
	Action  string // "created", "exists", "would create", "skipped"
	Scheme  string
	Reason  string // why an account was skipped
}

// maxAccounts bounds one import.
const maxAccounts = 1_000_000

// ReadUsersCSV reads accounts from CSV: a header row naming the columns address,
// password (the hash) and optionally aliases (separated by spaces), in any order.
func ReadUsersCSV(r io.Reader) ([]Account, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("migrate: users csv: header: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	ai, ok1 := col["address"]
	pi, ok2 := col["password"]
	if !ok1 || !ok2 {
		return nil, errors.New("migrate: users csv: the header must name the columns address and password (and optionally aliases)")
	}
	li, hasAliases := col["aliases"]
	var out []Account
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("migrate: users csv: %w", err)
		}
		if len(out) >= maxAccounts {
			return nil, fmt.Errorf("migrate: users csv: more than %d accounts", maxAccounts)
		}
		if ai >= len(rec) || pi >= len(rec) {
			return nil, fmt.Errorf("migrate: users csv: line %d has %d fields", line, len(rec))
		}
		a := Account{Address: strings.TrimSpace(rec[ai]), Hash: strings.TrimSpace(rec[pi])}
		if hasAliases && li < len(rec) {
			a.Aliases = strings.Fields(rec[li])
		}
		out = append(out, a)
	}
}

// LDAPUsers says how to read accounts from a directory (the seeds' "LDAP Init"): a
// search under Base with Filter; the address in MailAttr, the hash in PasswordAttr
// (userPassword, RFC 2307 {SCHEME}), aliases in AliasAttr.
type LDAPUsers struct {
	URL          string // ldap:// or ldaps://
	StartTLS     bool
	TLSConfig    *tls.Config
	BindDN       string
	Password     string
	Base         string
	Filter       string // default (objectClass=inetOrgPerson)
	MailAttr     string // default mail
	PasswordAttr string // default userPassword
	AliasAttr    string // default mailAlternateAddress; "-" for none
	Timeout      time.Duration
}

// ReadUsersLDAP searches the directory (paged, RFC 2696) and returns its accounts.
func ReadUsersLDAP(ctx context.Context, c LDAPUsers) ([]Account, error) {
	if c.Filter == "" {
		c.Filter = "(objectClass=inetOrgPerson)"
	}
	if c.MailAttr == "" {
		c.MailAttr = "mail"
	}
	if c.PasswordAttr == "" {
		c.PasswordAttr = "userPassword"
	}
	if c.AliasAttr == "" {
		c.AliasAttr = "mailAlternateAddress"
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Minute
	}
	var opts []ldap.DialOpt
	if c.TLSConfig != nil {
		opts = append(opts, ldap.DialWithTLSConfig(c.TLSConfig))
	}
	conn, err := ldap.DialURL(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrate: ldap %s: %w", c.URL, err)
	}
	defer conn.Close()
	conn.SetTimeout(c.Timeout)
	if c.StartTLS {
		tc := c.TLSConfig
		if tc == nil {
			tc = &tls.Config{}
		}
		if err := conn.StartTLS(tc); err != nil {
			return nil, fmt.Errorf("migrate: ldap %s: StartTLS: %w", c.URL, err)
		}
	}
	if c.BindDN != "" {
		if err := conn.Bind(c.BindDN, c.Password); err != nil {
			return nil, fmt.Errorf("migrate: ldap %s: bind as %s: %w", c.URL, c.BindDN, err)
		}
	}
	attrs := []string{c.MailAttr, c.PasswordAttr}
	if c.AliasAttr != "-" {
		attrs = append(attrs, c.AliasAttr)
	}
	req := ldap.NewSearchRequest(c.Base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, c.Filter, attrs, nil)
	res, err := conn.SearchWithPaging(req, 500)
	if err != nil {
		return nil, fmt.Errorf("migrate: ldap search %s %s: %w", c.Base, c.Filter, err)
	}
	var out []Account
	for _, e := range res.Entries {
		a := Account{Address: e.GetAttributeValue(c.MailAttr)}
		if a.Address == "" {
			continue
		}
		if v := e.GetRawAttributeValue(c.PasswordAttr); len(v) > 0 {
			a.Hash = string(v)
		}
		if c.AliasAttr != "-" {
			a.Aliases = e.GetAttributeValues(c.AliasAttr)
		}
		out = append(out, a)
		if len(out) > maxAccounts {
			return nil, fmt.Errorf("migrate: ldap: more than %d accounts", maxAccounts)
		}
	}
	return out, nil
}

// ImportUsers creates the accounts in db, keeping each hash whose scheme check accepts
// (auth.CheckHash): the users keep their passwords, and the database upgrades the hash at
// their first login. A {PLAIN} or {CLEARTEXT} password is hashed now. Accounts with a
// hash that cannot be verified are skipped and reported, never created with a password
// nobody knows. Aliases are returned as virtual(5) lines "alias target".
func ImportUsers(ctx context.Context, accts []Account, db UserDB, check func(string) error, dryRun bool) ([]UserResult, []string, error) {
	var res []UserResult
	var aliases []string
	for _, a := range accts {
		if err := ctx.Err(); err != nil {
			return res, aliases, err
		}
		r := UserResult{Address: a.Address, Scheme: schemeName(a.Hash)}
		if _, err := mail.ParseAddress(a.Address); err != nil || strings.ContainsAny(a.Address, " <>") {
			r.Action, r.Reason = "skipped", "not an address"
			res = append(res, r)
			continue
		}
		plain, isPlain := plainPassword(a.Hash)
		switch {
		case a.Hash == "":
			r.Action, r.Reason = "skipped", "no password hash"
		case !isPlain && check(a.Hash) != nil:
			r.Action, r.Reason = "skipped", fmt.Sprintf("scheme %s cannot be verified: %v", r.Scheme, check(a.Hash))
		}
		if r.Action == "" {
			exists, err := db.Exists(ctx, a.Address)
			switch {
			case err != nil:
				return res, aliases, err
			case exists:
				r.Action = "exists"
			case dryRun:
				r.Action = "would create"
			default:
				if isPlain {
					err = db.Add(ctx, a.Address, plain)
				} else {
					err = db.AddHash(ctx, a.Address, a.Hash)
				}
				if err != nil {
					r.Action, r.Reason = "skipped", err.Error()
				} else {
					r.Action = "created"
				}
			}
		}
		if r.Action != "skipped" {
			for _, al := range a.Aliases {
				if al != "" && !strings.EqualFold(al, a.Address) && !strings.ContainsAny(al, " \t\r\n") {
					aliases = append(aliases, al+" "+a.Address)
				}
			}
		}
		res = append(res, r)
	}
	return res, aliases, nil
}

func plainPassword(h string) (string, bool) {
	for _, p := range []string{"{PLAIN}", "{CLEARTEXT}", "{plain}", "{cleartext}"} {
		if s, ok := strings.CutPrefix(h, p); ok && s != "" {
			return s, true
		}
	}
	return "", false
}

func schemeName(h string) string {
	switch {
	case h == "":
		return "-"
	case strings.HasPrefix(h, "{"):
		if i := strings.IndexByte(h, '}'); i > 0 {
			return strings.ToUpper(h[1:i])
		}
	case strings.HasPrefix(h, "$2"):
		return "BLF-CRYPT"
	case strings.HasPrefix(h, "$argon2id$"):
		return "ARGON2ID"
	case strings.HasPrefix(h, "$6$"):
		return "SHA512-CRYPT"
	case strings.HasPrefix(h, "$5$"):
		return "SHA256-CRYPT"
	case strings.HasPrefix(h, "$1$"):
		return "MD5-CRYPT"
	}
	return "unknown"
}
