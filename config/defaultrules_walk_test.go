package config

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/content/contenttest"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/policy"
)

// The default rules on walks that could not finish: strangers' mail is refused naming
// the limit (or quarantined, when the rule file says so), authenticated users' mail is
// accepted with the X-Portcullis-Unchecked header, and ordinary mail is untouched.
func TestDefaultRulesTruncatedWalks(t *testing.T) {
	const from, to = "a@sender.example", "postmaster@example.test"
	legit := contenttest.Message(from, to, "report", "",
		contenttest.Attachment{Name: "report.pdf", Type: "application/pdf", Data: []byte("%PDF-1.4\n% a report\n")},
		contenttest.Attachment{Name: "logs.zip", Type: "application/zip", Data: contenttest.Zip(contenttest.Entry{Name: "log.txt", Data: contenttest.LowEntropy(200<<10, 1)})},
		contenttest.Attachment{Name: "src.tar.gz", Type: "application/gzip", Data: contenttest.TarGz(contenttest.Entry{Name: "main.go", Data: []byte("package main\n")})})
	parts := contenttest.ManyParts(from, to, 501)
	bomb := contenttest.Message(from, to, "logs", "", contenttest.Attachment{Name: "logs.gz", Type: "application/gzip", Data: contenttest.GzipZeros("logs", contenttest.GiB)})
	exe := contenttest.Message(from, to, "invoice", "", contenttest.Attachment{Name: "invoice.exe", Type: "application/octet-stream", Data: contenttest.PE()})

	evaluate := func(t *testing.T, rules []byte, raw, user string) (policy.Decision, *policy.Transaction) {
		t.Helper()
		rf, err := ParseRuleFile(rules, "default-rules.yaml", Deps{LocalDomains: []string{"example.test"}, Resolver: dnstest.New(t).Resolver()})
		require.NoError(t, err)
		e, err := policy.NewEngine(policy.EngineConfig{Rules: rf.Rules, Policies: rf.Policies, LocalDomains: []string{"example.test"}, Hostname: "mx.example.test"})
		require.NoError(t, err)
		tx := policy.NewTransaction(policy.Conn{ID: "t", Listener: "mx", IP: netip.MustParseAddr("192.0.2.7"), AuthUser: user})
		tx.Message = policy.NewMessage([]byte(raw), time.Now())
		return e.Evaluate(context.Background(), policy.StageData, tx), tx
	}

	for _, c := range []struct {
		name, msg, user string
		verdict         policy.Verdict
		reply           string // in the reply
	}{
		{"stranger, 501 parts", parts, "", policy.Reject, `554 5.7.1 message too complex to scan (max_parts)`},
		{"stranger, gzip bomb", bomb, "", policy.Reject, `554 5.7.1 archive expands too much (max_ratio)`},
		{"stranger, plain exe", exe, "", policy.Reject, `executable or disguised attachments`},
		{"stranger, ordinary attachments", legit, "", policy.Continue, ""},
		{"user, 501 parts", parts, "alice@example.test", policy.Continue, ""},
		{"user, gzip bomb", bomb, "alice@example.test", policy.Continue, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, _ := evaluate(t, DefaultRules(), c.msg, c.user)
			require.Equal(t, c.verdict, d.Verdict, "rule %q reply %v", d.Rule, d.Reply)
			if c.reply != "" {
				require.Contains(t, d.Reply.String(), c.reply)
			}
			if c.user != "" {
				var hdr string
				for _, h := range d.Headers {
					if h.Name == "X-Portcullis-Unchecked" {
						hdr = h.Value
					}
				}
				require.NotEmpty(t, hdr, "no X-Portcullis-Unchecked header: %v", d.Headers)
				require.Contains(t, d.Tags, "unchecked")
			}
		})
	}

	// Quarantine instead of reject, as the comment in the rule file says.
	q := strings.Replace(string(DefaultRules()), `reject: '554 5.7.1 "message too complex to scan ({{join(msg.limits_hit, ", ")}})"'`, "quarantine: true", 1)
	require.NotEqual(t, string(DefaultRules()), q)
	d, _ := evaluate(t, []byte(q), parts, "")
	require.Equal(t, policy.Quarantine, d.Verdict, "rule %q", d.Rule)
}
