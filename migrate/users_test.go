package migrate_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/auth/ldaptest"
	"github.com/portcullis-mail/portcullis/migrate"
)

func openUserDB(t *testing.T) *auth.DB {
	t.Helper()
	db, err := auth.OpenDB(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func schemes(t *testing.T, db *auth.DB) map[string]string {
	t.Helper()
	us, err := db.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, u := range us {
		out[u.Address] = u.Scheme
	}
	return out
}

// TestUsersFromCSV: hashes portcullis can verify are kept (the users log in with their
// old passwords, and the hash becomes argon2id then), {PLAIN} is hashed at once, the
// others are reported and not created; aliases come back as virtual(5) lines.
func TestUsersFromCSV(t *testing.T) {
	ctx := context.Background()
	csv := "address,password,aliases\n" +
		"carol@example.test,$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1,c@example.test carol.x@example.test\n" +
		"dave@example.test,{PLAIN}dave-password,\n" +
		"erin@example.test,{MD5-CRYPT}$1$abc$xyz,erin2@example.test\n" +
		"frank@example.test,,\n" +
		"not an address,{PLAIN}x,\n"
	accts, err := migrate.ReadUsersCSV(strings.NewReader(csv))
	if err != nil || len(accts) != 5 {
		t.Fatalf("ReadUsersCSV: %d %v", len(accts), err)
	}
	db := openUserDB(t)
	res, aliases, err := migrate.ImportUsers(ctx, accts, db, auth.CheckHash, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res {
		got = append(got, r.Address+" "+r.Action)
	}
	want := []string{"carol@example.test created", "dave@example.test created", "erin@example.test skipped", "frank@example.test skipped", "not an address skipped"}
	if !slices.Equal(got, want) {
		t.Fatalf("results %q, want %q", got, want)
	}
	if !slices.Equal(aliases, []string{"c@example.test carol@example.test", "carol.x@example.test carol@example.test"}) {
		t.Errorf("aliases %q", aliases)
	}
	if s := schemes(t, db); s["carol@example.test"] != "sha512-crypt" || s["dave@example.test"] != "argon2id" {
		t.Errorf("schemes before login: %v", s)
	}
	if _, err := db.Authenticate(ctx, "carol@example.test", "Hello world!", netip.Addr{}); err != nil {
		t.Fatalf("carol's old password: %v", err)
	}
	if _, err := db.Authenticate(ctx, "carol@example.test", "Hello world", netip.Addr{}); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if s := schemes(t, db); s["carol@example.test"] != "argon2id" {
		t.Errorf("carol's hash after login: %v", s["carol@example.test"])
	}
	// Importing again changes nothing.
	res, _, _ = migrate.ImportUsers(ctx, accts[:2], db, auth.CheckHash, false)
	if res[0].Action != "exists" || res[1].Action != "exists" {
		t.Errorf("second import: %+v", res)
	}
}

// TestUsersFromLDAP reads the accounts of a real slapd ({SSHA} userPassword, as OpenLDAP
// stores them) and creates them: the users log in with their LDAP passwords.
func TestUsersFromLDAP(t *testing.T) {
	ctx := context.Background()
	srv := ldaptest.Start(t,
		ldaptest.User{UID: "alice", Mail: "alice@example.test", Password: "alice-ldap-pw"},
		ldaptest.User{UID: "bob", Mail: "bob@example.test", Password: "bob-ldap-pw"},
		ldaptest.User{UID: "nomail", Password: "x"})
	accts, err := migrate.ReadUsersLDAP(ctx, migrate.LDAPUsers{URL: srv.URL, BindDN: srv.AdminDN, Password: srv.AdminPass,
		Base: "ou=people," + ldaptest.BaseDN, AliasAttr: "-"})
	if err != nil {
		t.Fatal(err)
	}
	if len(accts) != 2 || !strings.HasPrefix(accts[0].Hash, "{SSHA}") {
		t.Fatalf("accounts %+v", accts)
	}
	db := openUserDB(t)
	res, _, err := migrate.ImportUsers(ctx, accts, db, auth.CheckHash, false)
	if err != nil || res[0].Action != "created" || res[1].Action != "created" {
		t.Fatalf("import: %+v %v", res, err)
	}
	for u, pw := range map[string]string{"alice@example.test": "alice-ldap-pw", "bob@example.test": "bob-ldap-pw"} {
		if _, err := db.Authenticate(ctx, u, pw, netip.Addr{}); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
