package sieve

import (
	"context"
	"strings"
	"testing"
	"time"
)

// memHost is a Host over maps, recording what the delivery would record.
type memHost struct {
	mailboxes map[string]bool
	seen      map[string]time.Time
	now       time.Time
	spam      float64
}

func (h *memHost) MailboxExists(_ context.Context, m string) bool { return h.mailboxes[m] }
func (h *memHost) Seen(_ context.Context, key string, period time.Duration) bool {
	t, ok := h.seen[key]
	return ok && h.now.Sub(t) < period
}
func (h *memHost) Now() time.Time                            { return h.now }
func (h *memHost) SpamScore(context.Context) (float64, bool) { return h.spam, true }
func (h *memHost) VirusScore(context.Context) (int, bool)    { return 1, true }
func (h *memHost) record(res *Result) {
	for _, m := range res.Remember {
		if _, ok := h.seen[m.Key]; !ok || m.Refresh || h.now.Sub(h.seen[m.Key]) >= m.Period {
			h.seen[m.Key] = h.now
		}
	}
}

func TestVacationMemory(t *testing.T) {
	h := &memHost{seen: map[string]time.Time{}, now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	s, err := Compile([]byte(`require "vacation"; vacation :days 2 :subject "Away" "I am away.";`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	msg := NewMessage([]byte("From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: Hi\r\nMessage-ID: <1@x>\r\n\r\nHello\r\n"))
	env := Envelope{From: "alice@example.org", To: "bob@example.com"}
	vac := func() Vacation {
		t.Helper()
		res, err := s.Run(context.Background(), msg, env, h)
		if err != nil {
			t.Fatal(err)
		}
		h.record(res)
		for _, a := range res.Actions {
			if v, ok := a.(Vacation); ok {
				return v
			}
		}
		t.Fatal("no vacation action")
		return Vacation{}
	}
	v := vac()
	if v.Skip != "" || v.Period != 48*time.Hour || v.Subject != "Away" {
		t.Fatalf("first reply: %+v", v)
	}
	reply := string(v.Compose("bob@example.com", h.now, "<r1@example.com>"))
	for _, want := range []string{"To: Alice <alice@example.org>\r\n", "Subject: Away\r\n", "In-Reply-To: <1@x>\r\n",
		"References: <1@x>\r\n", "Auto-Submitted: auto-replied", "\r\n\r\nI am away.\r\n"} {
		if !strings.Contains(reply, want) {
			t.Errorf("reply lacks %q:\n%s", want, reply)
		}
	}
	h.now = h.now.Add(24 * time.Hour)
	if v := vac(); v.Skip == "" {
		t.Error("second reply within :days 2 was not suppressed")
	}
	h.now = h.now.Add(25 * time.Hour)
	if v := vac(); v.Skip != "" {
		t.Errorf("reply after the period suppressed: %s", v.Skip)
	}
}

func TestVacationNotTo(t *testing.T) {
	s, err := Compile([]byte(`require "vacation"; vacation "away";`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"list":      "From: a@example.org\r\nTo: bob@example.com\r\nList-Id: <l.example.org>\r\n\r\nx\r\n",
		"bulk":      "From: a@example.org\r\nTo: bob@example.com\r\nPrecedence: bulk\r\n\r\nx\r\n",
		"auto":      "From: a@example.org\r\nTo: bob@example.com\r\nAuto-Submitted: auto-replied\r\n\r\nx\r\n",
		"not to me": "From: a@example.org\r\nTo: carol@example.com\r\n\r\nx\r\n",
	}
	for name, raw := range cases {
		res, err := s.Run(context.Background(), NewMessage([]byte(raw)), Envelope{From: "a@example.org", To: "bob@example.com"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v := res.Actions[0].(Vacation); v.Skip == "" {
			t.Errorf("%s: vacation would be sent", name)
		}
	}
	for _, from := range []string{"", "MAILER-DAEMON@example.org", "owner-list@example.org", "list-request@example.org"} {
		res, _ := s.Run(context.Background(), NewMessage([]byte("To: bob@example.com\r\n\r\nx\r\n")), Envelope{From: from, To: "bob@example.com"}, nil)
		if v := res.Actions[0].(Vacation); v.Skip == "" {
			t.Errorf("sender %q: vacation would be sent", from)
		}
	}
}

func TestDuplicateAndHost(t *testing.T) {
	h := &memHost{seen: map[string]time.Time{}, now: time.Now(), mailboxes: map[string]bool{"Lists": true}, spam: 80}
	s, err := Compile([]byte(`require ["duplicate", "fileinto", "mailbox", "spamtestplus", "relational", "comparator-i;ascii-numeric"];
if duplicate { discard; stop; }
if spamtest :percent :value "ge" :comparator "i;ascii-numeric" "50" { fileinto "Junk"; }
if mailboxexists "Lists" { fileinto "Lists"; }`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	msg := NewMessage([]byte("Message-ID: <dup@x>\r\nSubject: s\r\n\r\nx\r\n"))
	res, err := s.Run(context.Background(), msg, Envelope{}, h)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.String(); !strings.Contains(got, "folder: Junk") || !strings.Contains(got, "folder: Lists") {
		t.Fatalf("first delivery:\n%s", got)
	}
	h.record(res)
	res, _ = s.Run(context.Background(), msg, Envelope{}, h)
	if _, ok := res.Actions[0].(Discard); !ok {
		t.Fatalf("second delivery of the same Message-ID: %s", res)
	}
}

func TestCache(t *testing.T) {
	c := NewCache(Options{}, 2)
	a, err := c.Compile([]byte("keep;"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.Compile([]byte("keep;"))
	if a != b {
		t.Error("the same source compiled twice")
	}
	if _, err := c.Compile([]byte("nonsense")); err == nil {
		t.Error("bad script compiled")
	}
	c.Compile([]byte("discard;"))
	c.Compile([]byte("stop;")) // over max: the cache is emptied, not grown
	if len(c.m) > 2 {
		t.Errorf("cache holds %d scripts, max 2", len(c.m))
	}
	c.Reset()
	if d, _ := c.Compile([]byte("keep;")); d == a {
		t.Error("Reset kept the script")
	}
}
