package config

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestREADMEExamples decodes the README's config example strictly and compiles its rule
// file example with real policy instances, so that the README cannot drift from the code.
func TestREADMEExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	var cfgBlock, rulesBlock string
	for _, m := range yamlBlock.FindAllStringSubmatch(string(readme), -1) {
		switch {
		case strings.Contains(m[1], "listeners:"):
			cfgBlock = m[1]
		case strings.Contains(m[1], "policies:"):
			rulesBlock = m[1]
		}
	}
	require.NotEmpty(t, cfgBlock)
	require.NotEmpty(t, rulesBlock)

	var c Config
	require.NoError(t, decodeStrict([]byte(cfgBlock), &c))
	require.Equal(t, "mx.example.org", c.Hostname)

	dir := t.TempDir()
	rulesBlock = strings.ReplaceAll(rulesBlock, "/etc/postfix/header_checks.pcre", "../headers/maps/header_checks.pcre")
	rulesBlock = strings.ReplaceAll(rulesBlock, "/etc/postfix/client_access.cidr", "../access/testdata/client_access.cidr")
	srv := dnstest.New(t)
	_, err = ParseRuleFile([]byte(rulesBlock), "README.md", Deps{Resolver: srv.Resolver(), DataDir: dir, LocalDomains: []string{"example.org"}})
	require.NoError(t, err)
}
