package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/access"
	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/content"
	"github.com/portcullis-mail/portcullis/dkim"
	"github.com/portcullis-mail/portcullis/greylist"
	"github.com/portcullis-mail/portcullis/headers"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/rbl"
	"github.com/portcullis-mail/portcullis/spf"
	"github.com/portcullis-mail/portcullis/virus"
)

// kind is one entry of the table from policy kinds to constructors.
type kind struct {
	build func(opts *yaml.Node, deps Deps) (policy.Policy, error)
	// selfNamed: the kind's key is also an option of its config ({rbl: [zone, ...]}).
	selfNamed bool
	// extendsMsg: the kind's facts extend msg in rules (msg.attachments).
	extendsMsg bool
	// is recognises an instance of the kind (for the built-ins).
	is func(policy.Policy) bool
}

// kinds is the one table from the names admins write to the constructors. Each entry
// decodes the instance's options strictly into the package's Config.
var kinds = map[string]kind{
	// An allowlist is an rbl instance too: {dnswl: [list.dnswl.org]}.
	"rbl":   {selfNamed: true, build: buildRBL},
	"dnswl": {selfNamed: true, build: buildRBL},
	"rhsbl": {selfNamed: true, build: func(n *yaml.Node, d Deps) (policy.Policy, error) {
		var c rbl.RHSBLConfig
		if err := decode(n, &c); err != nil {
			return nil, err
		}
		return rbl.NewRHSBL(c, rbl.Deps{Resolver: d.Resolver})
	}},
	"spf": {build: func(n *yaml.Node, d Deps) (policy.Policy, error) {
		var c spf.Config
		if err := decode(n, &c); err != nil {
			return nil, err
		}
		return spf.New(c, spf.Deps{Resolver: d.Resolver, LocalDomains: d.LocalDomains})
	}},
	"dmarc": {build: buildDKIM},
	"dkim":  {build: buildDKIM},
	"content": {extendsMsg: true, build: func(n *yaml.Node, d Deps) (policy.Policy, error) {
		var c content.Config
		if err := decode(n, &c); err != nil {
			return nil, err
		}
		return content.New(c)
	}, is: func(p policy.Policy) bool { _, ok := p.(*content.Policy); return ok }},
	"header_checks": {selfNamed: true, build: buildHeaders},
	"body_checks":   {selfNamed: true, build: buildHeaders},
	"date": {extendsMsg: true, build: func(n *yaml.Node, d Deps) (policy.Policy, error) {
		var c headers.DateConfig
		if err := decode(n, &c); err != nil {
			return nil, err
		}
		return headers.NewDate(c)
	}, is: func(p policy.Policy) bool { _, ok := p.(*headers.DatePolicy); return ok }},
	"bayes": {build: func(n *yaml.Node, d Deps) (policy.Policy, error) {
		var c bayes.PolicyConfig
		if err := decode(n, &c); err != nil {
			return nil, err
		}
		if c.DB == "" {
			if d.DataDir == "" {
				return nil, fmt.Errorf("bayes: db is required")
			}
			c.DB = bayes.DefaultDBPath(d.DataDir)
		}
		return bayes.NewPolicy(c, bayes.Deps{Logger: d.Logger, Postgres: d.BayesPostgres, Refresh: d.BayesRefresh, Stores: d.BayesStores})
	}},
	// Postfix access(5) tables, one check each: {check_client_access: cidr:/etc/postfix/x}.
	"check_client_access":                  {selfNamed: true, build: buildAccess},
	"check_reverse_client_hostname_access": {selfNamed: true, build: buildAccess},
	"check_helo_access":                    {selfNamed: true, build: buildAccess},
	"check_sender_access":                  {selfNamed: true, build: buildAccess},
	"check_recipient_access":               {selfNamed: true, build: buildAccess},
	"greylist": {build: func(n *yaml.Node, d Deps) (policy.Policy, error) {
		var c greylist.Config
		if err := decode(n, &c); err != nil {
			return nil, err
		}
		return greylist.New(c, greylist.Deps{Hostname: d.Hostname, DataDir: d.DataDir, Logger: d.Logger})
	}},
	"clamd": {build: func(n *yaml.Node, d Deps) (policy.Policy, error) {
		var c virus.Config
		if err := decode(n, &c); err != nil {
			return nil, err
		}
		return virus.New(c)
	}},
}

func buildRBL(n *yaml.Node, d Deps) (policy.Policy, error) {
	var c rbl.Config
	if err := decode(n, &c); err != nil {
		return nil, err
	}
	return rbl.New(c, rbl.Deps{Resolver: d.Resolver})
}

func buildHeaders(n *yaml.Node, d Deps) (policy.Policy, error) {
	var c headers.Config
	if err := decode(n, &c); err != nil {
		return nil, err
	}
	return headers.New(c)
}

func buildAccess(n *yaml.Node, d Deps) (policy.Policy, error) {
	var c access.Config
	if err := decode(n, &c); err != nil {
		return nil, err
	}
	return access.New(c, access.Deps{Logger: d.Logger})
}

func buildDKIM(n *yaml.Node, d Deps) (policy.Policy, error) {
	var c dkim.Config
	if err := decode(n, &c); err != nil {
		return nil, err
	}
	// One identity for the headers we write and the forged ones we remove.
	if c.AuthservID != "" && d.AuthservID != "" && c.AuthservID != d.AuthservID {
		return nil, fmt.Errorf("authserv_id %q differs from the server's %q: set authserv_id at the top of the server config instead", c.AuthservID, d.AuthservID)
	}
	if c.AuthservID == "" {
		c.AuthservID = d.AuthservID
	}
	return dkim.New(c, dkim.Deps{Resolver: d.Resolver})
}

// builtins are instances every rule file has without configuring them.
var builtins = []struct{ name, kind string }{
	{"content", "content"},
	{"date", "date"},
}
