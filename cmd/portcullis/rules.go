package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/policy"
)

func rulesCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{Use: "rules", Short: "Check and try out rule files"}
	c.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Report every error of a rule file (policies and rules) without starting a server",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, rf, err := loadRuleFile(g, args[0])
			if err != nil {
				errs := policy.Errors(err)
				for _, e := range errs {
					fmt.Fprintln(cmd.OutOrStdout(), e)
				}
				return fmt.Errorf("%s: %d error(s)", args[0], len(errs))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rules, %d policies: OK\n", args[0], len(rf.Rules), len(rf.Policies))
			return nil
		},
	})
	c.AddCommand(rulesTestCmd(g))
	return c
}

// loadRuleFile reads the server config (for the resolver and local domains) and the rule
// file, building its policies as the server would.
func loadRuleFile(g *globalFlags, path string) (*config.Config, *config.RuleFile, error) {
	cfg, err := config.Load(g.config, g.data)
	if err != nil {
		return nil, nil, err
	}
	resolver, err := newResolver(cfg)
	if err != nil {
		return nil, nil, err
	}
	rf, err := config.LoadRules(path, config.Deps{Resolver: resolver, DataDir: cfg.DataDir, Hostname: cfg.Hostname, LocalDomains: cfg.LocalDomains, AuthservID: cfg.AuthservID,
		BayesPostgres: cfg.Bayes.Postgres, BayesRefresh: cfg.Bayes.Refresh})
	return cfg, rf, err
}

type testFlags struct {
	clientIP, hostname, helo, from, auth string
	rcpts                                []string
}

func rulesTestCmd(g *globalFlags) *cobra.Command {
	f := &testFlags{}
	c := &cobra.Command{
		Use:   "test FILE MSG.eml",
		Short: "Run a message through a rule file and show what each rule saw and decided",
		Long: `Run a message through every stage of a rule file as if a client had sent it, and print,
stage by stage, each policy's result and each rule's outcome. Policies run for real (DNS
policies use the resolver of the config).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, rf, err := loadRuleFile(g, args[0])
			if err != nil {
				return err
			}
			raw, err := os.ReadFile(args[1])
			if err != nil {
				return err
			}
			return runRulesTest(cmd.Context(), cmd.OutOrStdout(), cfg, rf, raw, f)
		},
	}
	c.Flags().StringVar(&f.clientIP, "client-ip", "192.0.2.1", "client address")
	c.Flags().StringVar(&f.hostname, "client-hostname", "", "client's forward-confirmed host name")
	c.Flags().StringVar(&f.helo, "helo", "mail.example.net", "HELO/EHLO name")
	c.Flags().StringVar(&f.from, "from", "", "MAIL FROM address (default: the message's From:)")
	c.Flags().StringSliceVar(&f.rcpts, "rcpt", nil, "RCPT TO address, repeatable (default: postmaster@ the first local domain)")
	c.Flags().StringVar(&f.auth, "auth", "", "authenticated user name (default: not authenticated)")
	return c
}

func runRulesTest(ctx context.Context, w io.Writer, cfg *config.Config, rf *config.RuleFile, raw []byte, f *testFlags) error {
	engine, err := policy.NewEngine(policy.EngineConfig{Rules: rf.Rules, Policies: rf.Policies, LocalDomains: cfg.LocalDomains, Hostname: cfg.Hostname})
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(f.clientIP)
	if err != nil {
		return fmt.Errorf("--client-ip: %w", err)
	}
	raw = []byte(strings.ReplaceAll(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n", "\r\n"))
	msg := policy.NewMessage(raw, time.Now())
	from := f.from
	if from == "" {
		from = msg.Header.Get("From")
		if i, j := strings.LastIndexByte(from, '<'), strings.LastIndexByte(from, '>'); i >= 0 && j > i {
			from = from[i+1 : j]
		}
	}
	rcpts := f.rcpts
	if len(rcpts) == 0 && len(cfg.LocalDomains) > 0 {
		rcpts = []string{"postmaster@" + cfg.LocalDomains[0]}
	}
	tx := policy.NewTransaction(policy.Conn{ID: "rules-test", Listener: "mx", IP: ip, Hostname: f.hostname, AuthUser: f.auth})
	ctx = policy.WithTrace(ctx, func(rule string, stage policy.Stage, matched bool, err error, logOnly bool) {
		mark := "  no match"
		switch {
		case err != nil:
			mark = "  ERROR   "
		case matched && logOnly:
			mark = "  match (log_only)"
		case matched:
			mark = "  MATCH   "
		}
		fmt.Fprintf(w, "%s %s", mark, rule)
		if err != nil {
			fmt.Fprintf(w, ": %v", err)
		}
		fmt.Fprintln(w)
	})
	show := func(d policy.Decision) bool {
		for name, r := range d.Results {
			fmt.Fprintf(w, "  policy %s: %s", name, r.Status)
			if r.Reason != "" {
				fmt.Fprintf(w, " (%s)", r.Reason)
			}
			if r.Err != nil {
				fmt.Fprintf(w, " error: %v", r.Err)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "  => %s", d.Verdict)
		if d.Rule != "" {
			fmt.Fprintf(w, " by rule %s", d.Rule)
		}
		if d.Terminal() {
			fmt.Fprintf(w, ": %s", d.Reply)
		}
		fmt.Fprintln(w)
		return d.Terminal()
	}
	step := func(s policy.Stage, label string) bool {
		fmt.Fprintf(w, "%s\n", label)
		return show(engine.Evaluate(ctx, s, tx))
	}
	if step(policy.StageConnect, "connect "+ip.String()) {
		return nil
	}
	tx.Conn.HELO = f.helo
	if step(policy.StageHelo, "helo "+f.helo) {
		return nil
	}
	tx.Envelope.From = address.Parse(from)
	label := "mail from:<" + from + ">"
	if f.auth != "" {
		// sender.owned, as the server's routing maps answer it.
		rcfg := cfg.Routing
		rcfg.Logger = slog.New(slog.DiscardHandler)
		router, err := route.New(rcfg)
		if err != nil {
			return err
		}
		if tx.Envelope.FromOwned, err = router.SenderOwned(ctx, f.auth, tx.Envelope.From); err != nil {
			return err
		}
		label += fmt.Sprintf(" (sender.owned: %v)", tx.Envelope.FromOwned)
	}
	if step(policy.StageMail, label) {
		return nil
	}
	for _, r := range rcpts {
		tx.Rcpt = address.Parse(r)
		if !step(policy.StageRcpt, "rcpt to:<"+r+">") {
			tx.Envelope.Rcpts = append(tx.Envelope.Rcpts, tx.Rcpt)
		}
	}
	if len(tx.Envelope.Rcpts) == 0 {
		return nil
	}
	tx.Message = msg
	fmt.Fprintf(w, "data (%d bytes)\n", len(raw))
	d := engine.Evaluate(ctx, policy.StageData, tx)
	show(d)
	for _, h := range d.Headers {
		fmt.Fprintf(w, "  add header %s: %s\n", h.Name, h.Value)
	}
	fmt.Fprintf(w, "score %g tags %v\n", tx.Score(), tx.Tags())
	return nil
}
