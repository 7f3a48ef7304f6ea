package route_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/smtpd"
)

var _ smtpd.SenderOwners = (*route.Router)(nil)

// TestOwns is the ownership lookup behind sender.owned: a user owns their own address
// (any case, any extension), every address whose expansion delivers to them (aliases,
// virtual aliases, lists, canonical rewrites), and what the sender login map gives them;
// the null sender belongs to NullSenderUsers and the map's "<>" entry.
func TestOwns(t *testing.T) {
	r, dir := setup(t)
	ctx := context.Background()
	// The same maps with a login map and an admin.
	cfg := route.Config{
		LocalDomains:       []string{"example.test", "other.test"},
		VirtualDomains:     []string{"virtual.test"},
		Aliases:            dir + "/aliases",
		VirtualAliases:     dir + "/virtual",
		RecipientCanonical: dir + "/rcanon",
		SenderLoginMap: writeFile(t, dir, "logins", `# Postfix smtpd_sender_login_maps
newsletter@example.test   carol@example.test, Dave@Example.TEST
carol@gmail.example       carol@example.test
helpdesk                  dave@example.test
@shared.example           erin@example.test
<>                        mailer@example.test
`),
		NullSenderUsers: []string{"Postmaster@Example.Test"},
	}
	lr := newRouter(t, cfg)

	type tc struct {
		user, sender string
		want         bool
	}
	common := []tc{
		// One's own address, in any case and with an extension.
		{"alice@example.test", "alice@example.test", true},
		{"alice@example.test", "ALICE@Example.Test", true},
		{"alice@example.test", "alice+lists@example.test", true},
		{"alice@example.test", "Alice+x+y@example.test.", true},
		// Another local user's address, a foreign one, a look-alike.
		{"alice@example.test", "bob@example.test", false},
		{"alice@example.test", "alice@gmail.example", false},
		{"alice@example.test", "alicex@example.test", false},
		{"alice@example.test", "alice@other.test", false},
		// Aliases and virtual aliases that deliver to the user, with an extension too.
		{"alice@example.test", "root@example.test", true},       // root: alice, bob
		{"bob@example.test", "postmaster+x@example.test", true}, // postmaster: root
		{"alice@example.test", "info@example.test", true},       // virtual
		{"bob@example.test", "info@example.test", true},         // via sales@
		{"carol@example.net", "staff@example.test", true},
		{"alice@example.test", "support@virtual.test", true}, // nested through team@
		{"catchall@example.test", "x@virtual.test", true},    // the catch-all receives it
		{"alice@example.test", "old@example.test", true},     // recipient_canonical
		{"alice@example.test", "remote@example.test", false}, // delivers elsewhere
		{"bob@example.test", "self@example.test", false},
		// A loop owns nobody; the null sender nobody without a login map or admins.
		{"alice@example.test", "loop1@example.test", false},
		{"alice@example.test", "", false},
		{"", "alice@example.test", false},
	}
	for _, c := range common {
		for name, rt := range map[string]*route.Router{"maps": r, "maps+logins": lr} {
			got, err := rt.Owns(ctx, c.user, c.sender)
			if err != nil || got != c.want {
				t.Errorf("%s: Owns(%q, %q) = %v %v, want %v", name, c.user, c.sender, got, err, c.want)
			}
		}
	}
	for _, c := range []tc{
		{"carol@example.test", "newsletter@example.test", true},
		{"dave@example.test", "newsletter+2024@example.test", true}, // without the extension
		{"alice@example.test", "newsletter@example.test", false},
		{"carol@example.test", "carol@gmail.example", true},  // a foreign address, listed
		{"dave@example.test", "helpdesk@example.test", true}, // a bare local part, local domain
		{"dave@example.test", "helpdesk@elsewhere.test", false},
		{"erin@example.test", "anyone@shared.example", true},
		{"erin@example.test", "anyone@sub.shared.example", false},
		// The null sender: the admins and the "<>" entry.
		{"postmaster@example.test", "", true},
		{"mailer@example.test", "", true},
		{"alice@example.test", "", false},
		// The map adds owners; the others keep theirs.
		{"alice@example.test", "alice@example.test", true},
	} {
		got, err := lr.Owns(ctx, c.user, c.sender)
		if err != nil || got != c.want {
			t.Errorf("logins: Owns(%q, %q) = %v %v, want %v", c.user, c.sender, got, err, c.want)
		}
	}

	// smtpd's interface, with envelope addresses.
	if ok, err := lr.SenderOwned(ctx, "alice@example.test", address.Parse("<Alice+tag@EXAMPLE.test>")); !ok || err != nil {
		t.Errorf("SenderOwned(alice+tag) = %v %v", ok, err)
	}
	if ok, err := lr.SenderOwned(ctx, "postmaster@example.test", address.Parse("<>")); !ok || err != nil {
		t.Errorf("SenderOwned(<>) by an admin = %v %v", ok, err)
	}
	if ok, err := lr.SenderOwned(ctx, "alice@example.test", address.Parse("<>")); ok || err != nil {
		t.Errorf("SenderOwned(<>) by a user = %v %v", ok, err)
	}
}

// TestOwnsMapErrors: a login map that cannot be read makes the lookup fail temporarily
// (451 at MAIL, never a silent "not owned"); a bad login map is refused at load.
func TestOwnsMapErrors(t *testing.T) {
	dir := t.TempDir()
	r, err := route.New(route.Config{LocalDomains: []string{"example.test"}, SenderLoginMap: dir + "/missing", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Owns(context.Background(), "alice@example.test", "alice@example.test")
	var re *route.ResolveError
	if !errors.As(err, &re) || !re.Temporary {
		t.Fatalf("Owns with a missing login map: %v", err)
	}

	bad := writeFile(t, dir, "bad", "x@example.test <alice@example.test>\n")
	r, err = route.New(route.Config{LocalDomains: []string{"example.test"}, SenderLoginMap: bad, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("a login map with a bad address loaded")
	}

	// Changes are picked up like the other maps'.
	good := writeFile(t, dir, "good", "x@example.test alice@example.test\n")
	r = newRouter(t, route.Config{LocalDomains: []string{"example.test"}, SenderLoginMap: good})
	if ok, _ := r.Owns(context.Background(), "bob@example.test", "x@example.test"); ok {
		t.Fatal("bob owns x before the change")
	}
	if err := os.WriteFile(good, []byte("x@example.test alice@example.test, bob@example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Owns(context.Background(), "bob@example.test", "x@example.test"); !ok || err != nil {
		t.Fatalf("bob after the reload: %v %v", ok, err)
	}
}
