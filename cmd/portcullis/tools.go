package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-mail/portcullis/dkim"
	"github.com/portcullis-mail/portcullis/virus"
)

func dkimCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{Use: "dkim", Short: "DKIM signing keys"}
	var selector, algo string
	keygen := &cobra.Command{
		Use:   "keygen DOMAIN",
		Short: "Create a DKIM key in dkim.sign.dir (DATA/dkim) and print the DNS TXT record to publish",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadAsDataOwner(g)
			if err != nil {
				return err
			}
			name, txt, err := dkim.GenerateKey(cfg.DKIM.Sign.Dir, args[0], selector, algo)
			if err != nil {
				return err
			}
			// Split into strings of at most 255 bytes: BIND refuses a longer one.
			fmt.Fprintf(cmd.OutOrStdout(), "Publish this TXT record, then mail from %s submitted by authenticated users is signed:\n\n%s\n", args[0], dkim.ZoneRecord(name, txt))
			return nil
		},
	}
	keygen.Flags().StringVar(&selector, "selector", time.Now().UTC().Format("200601"), "DKIM selector")
	keygen.Flags().StringVar(&algo, "algo", dkim.AlgoRSA, "key algorithm: "+dkim.AlgoRSA+" or "+dkim.AlgoEd25519+" (many verifiers still lack ed25519)")
	c.AddCommand(keygen)
	return c
}

func virusCmd() *cobra.Command {
	c := &cobra.Command{Use: "virus", Short: "Scan files with clamd, check daemons"}
	var addrs []string
	var concurrency int
	var infectedOnly bool
	c.PersistentFlags().StringSliceVar(&addrs, "clamd", []string{"unix:/run/clamav/clamd.ctl"}, "clamd address(es): unix:PATH or tcp:HOST:PORT")
	scan := &cobra.Command{
		Use:   "scan FILE...",
		Short: "Scan files (messages or anything) through clamd's INSTREAM, like clamdscan --stream",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := virus.NewClient(virus.Config{Addrs: addrs})
			if err != nil {
				return err
			}
			defer cl.Close()
			sum, err := virus.ScanFiles(cmd.Context(), cl, args, cmd.OutOrStdout(), virus.ScanOptions{Concurrency: concurrency, InfectedOnly: infectedOnly})
			if err != nil {
				return err
			}
			// clamdscan's exit codes: 0 clean, 1 infected, 2 errors (fail closed in scripts).
			if code := sum.ExitCode(); code != 0 {
				return exitError{code: code, msg: fmt.Sprintf("%d infected, %d error(s)", sum.Infected, sum.Errors)}
			}
			return nil
		},
	}
	scan.Flags().IntVarP(&concurrency, "concurrency", "j", 1, "files scanned at once")
	scan.Flags().BoolVar(&infectedOnly, "infected", false, "print only infected files and errors")
	ping := &cobra.Command{
		Use:   "ping",
		Short: "PING and VERSION every configured clamd",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := virus.NewClient(virus.Config{Addrs: addrs})
			if err != nil {
				return err
			}
			defer cl.Close()
			return virus.PingAll(cmd.Context(), cl, cmd.OutOrStdout())
		},
	}
	c.AddCommand(scan, ping)
	return c
}
