package virus_test

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policy/policytest"
	"github.com/portcullis-mail/portcullis/virus"
	"github.com/portcullis-mail/portcullis/virus/clamdtest"
)

// readmeRules returns the rule examples of README.md.
func readmeRules(t *testing.T) []policy.RuleSpec {
	t.Helper()
	return policytest.ReadmeRules(t, "README.md")
}

// TestReadmeRulesOnRealClamd runs the README's rules in the policy engine over a real
// clamd: infected → 554 5.7.1 naming the virus, clean → no decision, too large → 552 5.3.4,
// clamd killed → 451 4.7.1 (fail closed).
func TestReadmeRulesOnRealClamd(t *testing.T) {
	d := clamdtest.StartClamd(t, clamdtest.Options{StreamMaxLength: "1M"})
	p, err := virus.New(virus.Config{Addrs: []string{d.TCPAddr(), d.UnixAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.NewEngine(policy.EngineConfig{
		Rules:    readmeRules(t),
		Policies: map[string]policy.Policy{"clamav": p},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	eval := func(raw []byte) policy.Decision {
		tx := policy.NewTransaction(policy.Conn{})
		tx.Message = policy.NewMessage(raw, time.Now())
		return e.Evaluate(t.Context(), policy.StageData, tx)
	}
	infected := mimeMessage("invoice.zip", zipOf(t, "invoice.com", []byte(clamdtest.EICAR)))
	dec := eval(infected)
	if dec.Verdict != policy.Reject || dec.Reply.Code != 554 || dec.Reply.Enhanced != "5.7.1" ||
		!strings.Contains(dec.Reply.Text, clamdtest.EICARSignature) || dec.Rule != "virus" {
		t.Errorf("infected: %+v", dec)
	}
	if dec := eval([]byte("Subject: hi\r\n\r\nhello\r\n")); dec.Verdict != policy.Continue {
		t.Errorf("clean: %+v", dec)
	}
	if dec := eval(bytes.Repeat([]byte("x"), 2<<20)); dec.Verdict != policy.Reject || dec.Reply.Code != 552 || dec.Rule != "virus-too-large" {
		t.Errorf("too large: %+v", dec)
	}
	d.Kill()
	if dec := eval(infected); dec.Verdict != policy.Tempfail || dec.Reply.Code != 451 || dec.Reply.Enhanced != "4.7.1" {
		t.Errorf("clamd killed: %+v", dec)
	}
}
