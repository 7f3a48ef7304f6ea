package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/portcullis-mail/portcullis/auth/ldaptest"
)

// changePassword changes uid's password as ldappasswd does: bound as the user, the
// Password Modify extended operation (RFC 3062).
func changePassword(t *testing.T, srv *ldaptest.Server, uid, old, next string) {
	t.Helper()
	c, err := ldap.DialURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(ldaptest.DN(uid), old); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PasswordModify(ldap.NewPasswordModifyRequest("", old, next)); err != nil {
		t.Fatal(err)
	}
}

// The credential stamp of an LDAP user changes when their password does, against the
// real slapd (whose ACL hides userPassword and which has no ppolicy: entryCSN), and
// not when they merely log in.
func TestLDAPStampChangesWithPassword(t *testing.T) {
	srv := startSlapd(t)
	l := newLDAP(t, srv, nil)
	ctx := context.Background()
	s1, err := l.Stamp(ctx, "bob@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s1, "ldap2:") {
		t.Fatalf("stamp %q: want one from entryCSN/modifyTimestamp (ldap2:)", s1)
	}
	if _, err := l.Authenticate(ctx, "bob@example.test", "bob-pw", loopback); err != nil {
		t.Fatal(err)
	}
	if s, err := l.Stamp(ctx, "bob@example.test"); err != nil || s != s1 {
		t.Fatalf("after a login: %q, %v; want %q", s, err, s1)
	}
	if s, err := l.Stamp(ctx, "alice@example.test"); err != nil || s == s1 {
		t.Errorf("alice's stamp %q (%v) is bob's", s, err)
	}
	// Two changes within the same second: entryCSN tells them apart.
	changePassword(t, srv, "bob", "bob-pw", "bob-pw2")
	s2, err := l.Stamp(ctx, "bob@example.test")
	if err != nil || s2 == s1 {
		t.Fatalf("after a password change: %q, %v", s2, err)
	}
	changePassword(t, srv, "bob", "bob-pw2", "bob-pw3")
	if s3, err := l.Stamp(ctx, "bob@example.test"); err != nil || s3 == s2 || s3 == s1 {
		t.Fatalf("after a second change: %q, %v", s3, err)
	}
	if _, err := l.Stamp(ctx, "nobody@example.test"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("unknown user: %v", err)
	}
}

// The most precise attribute the entry shows wins: the password itself, then its
// change time, then what any modification changes; none gives the constant "ldap".
func TestEntryStamp(t *testing.T) {
	full := map[string][]string{"userPassword": {"{SSHA}x"}, "pwdChangedTime": {"20260101000000Z"}, "entryCSN": {"20260101000000.000001Z#000000#000#000000"}}
	e := ldap.NewEntry("uid=a", full)
	if s := entryStamp(e); !strings.HasPrefix(s, "ldap0:") {
		t.Errorf("with userPassword: %q", s)
	}
	delete(full, "userPassword")
	if s := entryStamp(ldap.NewEntry("uid=a", full)); !strings.HasPrefix(s, "ldap1:") {
		t.Errorf("with pwdChangedTime: %q", s)
	}
	before := entryStamp(ldap.NewEntry("uid=a", full))
	full["pwdChangedTime"] = []string{"20260101000001Z"}
	if entryStamp(ldap.NewEntry("uid=a", full)) == before {
		t.Error("pwdChangedTime changed, the stamp did not")
	}
	if s := entryStamp(ldap.NewEntry("uid=a", map[string][]string{"pwdLastSet": {"133000000000000000"}})); !strings.HasPrefix(s, "ldap1:") {
		t.Errorf("Active Directory's pwdLastSet: %q", s)
	}
	if s := entryStamp(ldap.NewEntry("uid=a", map[string][]string{"mail": {"a@x"}})); s != "ldap" {
		t.Errorf("nothing readable: %q", s)
	}
}

// The kind of stamp in use is logged once, at the first read that finds it: against the
// real slapd, which shows the service account entryCSN only, a warning naming the cure.
func TestLDAPStampKindLoggedOnce(t *testing.T) {
	srv := startSlapd(t)
	var logs bytes.Buffer
	l := newLDAP(t, srv, nil)
	l.log = slog.New(slog.NewTextHandler(&logs, nil))
	ctx := context.Background()
	for _, u := range []string{"bob@example.test", "bob@example.test", "alice@example.test"} {
		if _, err := l.Stamp(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "checked against entryCSN"); n != 1 {
		t.Errorf("the entryCSN stamp logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "pwdChangedTime") || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("the warning does not name the cure:\n%s", logs.String())
	}
}

// With the ppolicy overlay and the ACL rule docs/operations.md gives, the stamp is
// pwdChangedTime: a failed bind, which makes ppolicy write pwdFailureTime and so moves
// entryCSN (the fallback), leaves it alone; a password change moves it. An entry loaded
// with slapadd has no pwdChangedTime until its first change: the fallback until then.
func TestLDAPStampPwdChangedTime(t *testing.T) {
	srv := ldaptest.StartPPolicy(t, ldapUsers...)
	l := newLDAP(t, srv, nil)
	ctx := context.Background()
	if s, err := l.Stamp(ctx, "bob@example.test"); err != nil || !strings.HasPrefix(s, "ldap2:") {
		t.Fatalf("before any change: %q, %v; want the entryCSN fallback (ldap2:)", s, err)
	}
	changePassword(t, srv, "bob", "bob-pw", "bob-pw2")
	s1, err := l.Stamp(ctx, "bob@example.test")
	if err != nil || !strings.HasPrefix(s1, "ldap1:") {
		t.Fatalf("after a change: %q, %v; want pwdChangedTime (ldap1:)", s1, err)
	}
	csn := func() string {
		c, err := ldap.DialURL(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Bind(srv.AdminDN, srv.AdminPass); err != nil {
			t.Fatal(err)
		}
		res, err := c.Search(ldap.NewSearchRequest(ldaptest.DN("bob"), ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"entryCSN", "pwdFailureTime"}, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("reading bob's entryCSN: %v", err)
		}
		return res.Entries[0].GetAttributeValue("entryCSN")
	}
	before := csn()
	if _, err := l.Authenticate(ctx, "bob@example.test", "wrong", loopback); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a wrong password: %v", err)
	}
	if csn() == before {
		t.Fatal("ppolicy's failure counter did not move entryCSN: the test shows nothing")
	}
	if s, err := l.Stamp(ctx, "bob@example.test"); err != nil || s != s1 {
		t.Errorf("after a failed bind: %q, %v; want %q", s, err, s1)
	}
	// pwdChangedTime has whole seconds: two changes within one are one stamp.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	changePassword(t, srv, "bob", "bob-pw2", "bob-pw3")
	if s, err := l.Stamp(ctx, "bob@example.test"); err != nil || s == s1 || !strings.HasPrefix(s, "ldap1:") {
		t.Errorf("after a second change: %q, %v", s, err)
	}
	// Anyone but the service account is refused pwdChangedTime by the rule after it.
	c, err := ldap.DialURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Search(ldap.NewSearchRequest(ldaptest.DN("bob"), ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"pwdChangedTime"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("pwdChangedTime") != "" {
		t.Errorf("an anonymous search sees pwdChangedTime (%v): the ACL does not do what the docs say", err)
	}
}
