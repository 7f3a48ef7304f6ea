package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docs/config.md is what the config structs and their comments say now.
func TestDocsUpToDate(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := generate(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, docPath))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		i := 0
		for i < len(g) && i < len(w) && g[i] == w[i] {
			i++
		}
		line := func(ls []string) string {
			if i < len(ls) {
				return ls[i]
			}
			return "(end of file)"
		}
		t.Fatalf("%s is stale: a config struct or its comments changed. Run\n\n\tgo run ./config/internal/gendoc\n\nand commit the result. First difference, line %d:\n have: %s\n want: %s", docPath, i+1, line(g), line(w))
	}
}

// Every key has a description (bayes's own are the tools' to write).
func TestEveryKeyDescribed(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	g := &gen{src: &source{root: root, pkgs: map[string]*pkgAST{}}, derived: map[string]string{}}
	if err := g.server(); err != nil {
		t.Fatal(err)
	}
	if err := g.policies(); err != nil {
		t.Fatal(err)
	}
	for _, s := range append(g.server_, g.policy...) {
		for _, r := range s.rows {
			if r.desc == "" {
				t.Errorf("%s: key %s has no doc comment", s.heading, r.key)
			}
		}
	}
}

func TestCommentDefault(t *testing.T) {
	one := fieldDoc{groupSize: 1}
	for doc, want := range map[string]string{
		"X is the limit (default 32MiB); larger messages get 552.":            "32MiB",
		"X bounds it (default: the number of CPUs, at least 2).":              "the number of CPUs",
		"X bounds one attempt (default: resolv.conf's timeout, else 2s).":     "resolv.conf's timeout, else 2s",
		"X names this MTA. [localhost]":                                       "localhost",
		`X separates an extension. ["+"]; "-" for qmail style.`:               `"+"`,
		`X, when set, carries every other domain ("[smtp.example.net]:587").`: "",
		"X is 1 minute; default 1 minute.":                                    "1 minute",
		"Default true.":                                                       "true",
		`X finds the entry. Default "(&(mail=%s))"; for AD e.g. "x".`:         `"(&(mail=%s))"`,
		"X is off by default: while cached, it is cheap.":                     "",
		"X has no default at all":                                             "",
	} {
		if got := commentDefault(one, doc, false); got != want {
			t.Errorf("commentDefault(%q) = %q, want %q", doc, got, want)
		}
	}
	// A comment shared by a group gives each field its own default.
	for i, want := range []string{"30s", "5m", "10m"} {
		if got := commentDefault(fieldDoc{groupIndex: i, groupSize: 3}, "A, B and C bound it. [30s, 5m, 10m; RFC 5321]", false); got != want {
			t.Errorf("group %d: %q, want %q", i, got, want)
		}
	}
	for i, want := range []string{"500", "20"} {
		if got := commentDefault(fieldDoc{groupIndex: i, groupSize: 2}, "A in total (default 500) and B (default 20).", false); got != want {
			t.Errorf("group %d: %q, want %q", i, got, want)
		}
	}
	for i, want := range []string{"3", "12"} {
		if got := commentDefault(fieldDoc{groupIndex: i, groupSize: 2}, "A and B bound it (default 3 and 12).", false); got != want {
			t.Errorf("group %d: %q, want %q", i, got, want)
		}
	}
	if got := commentDefault(fieldDoc{groupIndex: 1, groupSize: 2}, "A is the first (default 1m); B caps it.", false); got != "" {
		t.Errorf("second of a group with one default: %q", got)
	}
	if got := commentDefault(one, "X lists them (default: helo, sender, client_hostname).", true); got != "helo, sender, client_hostname" {
		t.Errorf("list default: %q", got)
	}
}

func TestDescribe(t *testing.T) {
	keys := map[string]string{"MaxMessageSize": "max_message_size", "TLS": "tls", "Hostname": "hostname"}
	for doc, want := range map[string]string{
		"Hostname is our name in greetings.":        "Our name in greetings.",
		"Hostname is the name; see MaxMessageSize.": "The name; see max_message_size.",
		"Hostname names the host.":                  "Names the host.",
		"Hostname per message.":                     "hostname per message.",
		"Config configures the policy.":             "Configures the policy.",
		"TLS is used when the TLS field says so.":   "TLS is used when the TLS field says so.",
		"MaxMessageSize bounds\na message.":         "max_message_size bounds a message.",
	} {
		name, _, _ := strings.Cut(doc, " ")
		if got := describe(doc, name, keys); got != want {
			t.Errorf("describe(%q) = %q, want %q", doc, got, want)
		}
	}
}

func TestScalar(t *testing.T) {
	for in, want := range map[string]string{
		"example.test":      "example.test",
		"127.0.0.1:8025":    "127.0.0.1:8025",
		"::1/128":           `"::1/128"`,
		"true":              `"true"`,
		"12":                `"12"`,
		"":                  `""`,
		"a, b":              `"a, b"`,
		"postmaster@x.test": "postmaster@x.test",
	} {
		if got := scalar(in); got != want {
			t.Errorf("scalar(%q) = %s, want %s", in, got, want)
		}
	}
}
