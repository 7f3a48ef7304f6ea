// Command minimal-mx is the smallest useful portcullis server: an MX on 127.0.0.1:2525 for
// the domain example.test that rejects executable attachments and blocklisted clients and
// keeps every accepted message durably in ./queue. Read it top to bottom: it is the recipe
// the portcullis binary follows with more policies.
package main

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/portcullis-mail/portcullis/content"
	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/rbl"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/spool"
)

const rules = `
rules:
  - name: blocklisted
    if: zen.listed && !client.trusted
    reject: 554 5.7.1 "{{client.ip}} is listed by zen.spamhaus.org"
  - name: executables
    if: any(msg.attachments, .executable || .ext in ["exe", "pif", "scr"])
    reject: 554 5.7.1 "executable attachments are not accepted"
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// 1. DNS for the blocklist: the system's resolvers behind a cache.
	client, err := dnsx.NewClient(dnsx.ClientConfig{})
	check(err)
	resolver, err := dnsx.NewCache(client, dnsx.CacheConfig{})
	check(err)

	// 2. Policies observe; rules decide.
	zen, err := rbl.New(rbl.Config{RBL: rbl.Specs{"zen.spamhaus.org=127.0.0.[2..11]"}}, rbl.Deps{Resolver: resolver})
	check(err)
	attachments, err := content.New(content.Config{})
	check(err)
	specs, err := policy.ParseRules([]byte(rules), "minimal-mx")
	check(err)
	engine, err := policy.NewEngine(policy.EngineConfig{
		Rules: specs,
		Policies: map[string]policy.Policy{
			"zen":     zen,
			"content": policy.ExtendMsg(attachments), // its facts become msg.attachments, ...
		},
		LocalDomains: []string{"example.test"},
	})
	check(err)

	// 3. The durable queue: Enqueue returns after fsync, so 250 means on disk.
	queue, err := spool.Open("queue", spool.Config{})
	check(err)
	defer queue.Close()

	// 4. The SMTP server calls the engine at each stage and the queue after DATA.
	srv, err := smtpd.New(smtpd.Config{
		Hostname:        "mx.example.test",
		DataDir:         ".",
		LocalDomains:    []string{"example.test"},
		TrustedNetworks: []string{"127.0.0.0/8"},
		Listeners:       []smtpd.ListenerConfig{{Name: "mx", Addr: "127.0.0.1:2525", Mode: smtpd.ModeMX}},
	}, smtpd.Deps{Engine: engine, Spool: queue, Resolver: resolver})
	check(err)
	slog.Info("listening on 127.0.0.1:2525")
	check(srv.Serve(ctx))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
