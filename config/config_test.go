package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/policy"
)

func TestDefaultRulesCompile(t *testing.T) {
	rf, err := ParseRuleFile(DefaultRules(), "default-rules.yaml", Deps{LocalDomains: []string{"example.test"}, Resolver: dnstest.New(t).Resolver()})
	require.NoError(t, err)
	require.NotEmpty(t, rf.Rules)
	require.Contains(t, rf.Policies, "content")
	require.Contains(t, rf.Policies, "date")
	require.Contains(t, rf.Policies, "spf", "the sender-ours rules need SPF of our domains")
}

func TestLoadStrict(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(path, []byte("hostname: mx.example.org\nlocal_domains: [Example.ORG.]\nsmtp:\n  max_recipients: 5\n  bogus: 1\n"), 0o644))
	_, err := Load(path, dir)
	require.ErrorContains(t, err, "portcullis.yaml")
	require.ErrorContains(t, err, "line 5: unknown key bogus")

	require.NoError(t, os.WriteFile(path, []byte("hostname: mx.example.org\nlocal_domains: [Example.ORG.]\nsmtp:\n  max_recipients: 5\n"), 0o644))
	c, err := Load(path, dir)
	require.NoError(t, err)
	require.Equal(t, []string{"example.org"}, c.LocalDomains)
	require.Equal(t, 5, c.SMTP.MaxRecipients)
	require.Equal(t, "mx.example.org", c.SMTP.Hostname)
	require.Len(t, c.SMTP.Listeners, 4, "listeners keep their defaults")
	require.Equal(t, filepath.Join(dir, "rules.yaml"), c.Rules)
}

func TestRuleFilePolicies(t *testing.T) {
	srv := dnstest.New(t)
	deps := Deps{Resolver: srv.Resolver()}
	rf, err := ParseRuleFile([]byte(`
policies:
  zen: { rbl: ["zen.example=127.0.0.[2..11]*3"], txt: true }
  spf: { spf: { helo: true } }
  auth: { kind: dmarc }
rules:
  - name: zen
    if: zen.listed
    reject: 554 5.7.1 "listed"
  - name: spf
    if: spf.fail
    score: 3
`), "rules.yaml", deps)
	require.NoError(t, err)
	require.Len(t, rf.Policies, 5) // three configured, two built-in

	_, err = ParseRuleFile([]byte(`
policies:
  a: { kind: nosuch }
  b: { spf: { hello: true } }
  c: { rbl: [zen.example], bogus: 1 }
  d: 12
rules:
  - name: r
    if: a.listed
    reject: true
`), "bad.yaml", deps)
	errs := policy.Errors(err)
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	text := strings.Join(all, "\n")
	require.Contains(t, text, `bad.yaml:3:6: policy "a": unknown kind "nosuch"`)
	require.Contains(t, text, `policy "b": `)
	require.Contains(t, text, "unknown key hello")
	require.Contains(t, text, "unknown key bogus")
	require.Contains(t, text, `bad.yaml:6:6: policy "d": must be a mapping`)
	require.Contains(t, text, `unknown name a`) // the rule names a policy that failed to build
}
