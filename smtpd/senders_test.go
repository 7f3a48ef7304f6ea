package smtpd_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
)

// ownerMap is a test SenderOwners: the senders each user owns; "fail" as a sender makes
// the lookup fail.
type ownerMap struct {
	mu    sync.Mutex
	owns  map[string][]string
	asked []string
}

func (o *ownerMap) SenderOwned(_ context.Context, user string, sender address.Address) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.asked = append(o.asked, user+" "+sender.Raw)
	if sender.Local == "fail" {
		return false, errors.New("login map unreadable")
	}
	for _, s := range o.owns[user] {
		if s == sender.Raw {
			return true, nil
		}
	}
	return false, nil
}

// ownedEngine rejects at MAIL what an authenticated client does not own, as the default
// rule sender-login-mismatch does, and records what each mail stage saw.
func ownedEngine(seen *[]bool, mu *sync.Mutex) smtpd.EngineFunc {
	return func(_ context.Context, stage policy.Stage, tx *policy.Transaction) policy.Decision {
		if stage != policy.StageMail {
			return policy.Decision{}
		}
		mu.Lock()
		*seen = append(*seen, tx.Envelope.FromOwned)
		mu.Unlock()
		if tx.Conn.AuthUser != "" && !tx.Envelope.FromOwned {
			return policy.Decision{Verdict: policy.Reject, Reply: policy.Reply{Code: 553, Enhanced: "5.7.1", Text: "Sender address rejected: not owned by user " + tx.Conn.AuthUser}}
		}
		return policy.Decision{}
	}
}

// TestSenderOwnership: smtpd asks Deps.Senders at MAIL for authenticated clients only and
// hands the answer to the rules as Envelope.FromOwned; a failed lookup is 451 4.3.0;
// without Senders an authenticated client owns every sender.
func TestSenderOwnership(t *testing.T) {
	var mu sync.Mutex
	var seen []bool
	owners := &ownerMap{owns: map[string][]string{"alice@example.test": {"alice@example.test", ""}}}
	ts := start(t, func(_ *smtpd.Config, d *smtpd.Deps) {
		d.Engine = ownedEngine(&seen, &mu)
		d.Senders = owners
	})

	// Unauthenticated on the MX: not asked, not owned, accepted.
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<alice@example.test>", 250)
	c.Expect(t, "RSET", 250)

	c = dial(t, ts.addr("submission"))
	authenticate(t, c)
	c.Expect(t, "MAIL FROM:<alice@example.test>", 250)
	c.Expect(t, "RCPT TO:<friend@elsewhere.test>", 250)
	c.Expect(t, "RSET", 250)
	// Not owned: the mail-stage rejection is answered at RCPT (delay_reject).
	c.Expect(t, "MAIL FROM:<bob@example.test>", 250)
	if r := c.Expect(t, "RCPT TO:<friend@elsewhere.test>", 553); r.Enhanced() != "5.7.1" {
		t.Errorf("not owned: %v", r)
	}
	c.Expect(t, "RSET", 250)
	c.Expect(t, "MAIL FROM:<>", 250)
	c.Expect(t, "RCPT TO:<friend@elsewhere.test>", 250)
	c.Expect(t, "RSET", 250)
	if r := c.Expect(t, "MAIL FROM:<fail@example.test>", 451); r.Enhanced() != "4.3.0" {
		t.Errorf("failed lookup: %v", r)
	}

	mu.Lock()
	got := append([]bool(nil), seen...)
	mu.Unlock()
	if want := []bool{false, true, false, true}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("mail stages saw FromOwned %v, want %v", got, want)
	}
	owners.mu.Lock()
	asked := owners.asked
	owners.mu.Unlock()
	if len(asked) != 4 || asked[0] != "alice@example.test alice@example.test" || asked[2] != "alice@example.test " {
		t.Errorf("asked %q", asked)
	}

	// Without Senders, an authenticated user owns every sender.
	var seen2 []bool
	ts = start(t, func(_ *smtpd.Config, d *smtpd.Deps) { d.Engine = ownedEngine(&seen2, &mu) })
	c = dial(t, ts.addr("submission"))
	authenticate(t, c)
	c.Expect(t, "MAIL FROM:<bob@example.test>", 250)
	c.Expect(t, "RCPT TO:<friend@elsewhere.test>", 250)
}
