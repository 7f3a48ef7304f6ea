// Command portcullis is the mail server and its admin tools in one binary:
//
//	portcullis serve [--config FILE] [--data DIR]    run the server (embedded defaults without --config)
//	portcullis rules check FILE                       report every error of a rule file
//	portcullis rules test FILE MSG.eml [flags]        show what each rule saw and decided
//	portcullis dkim keygen DOMAIN                     create a DKIM key, print the DNS record
//	portcullis virus scan FILE... | virus ping        talk to clamd
//	portcullis report [--since T] [--until T] [--json] pflogsumm's summary from the decision log
//
// Every command has --help.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "portcullis:", err)
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// exitError carries a specific exit status (virus scan follows clamdscan's 0/1/2).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// globalFlags are shared by the commands that read the server config.
type globalFlags struct {
	config string
	data   string
}

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "portcullis",
		Short:         "portcullis: SMTP-time mail filtering and a complete mail server",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.config, "config", "", "server config file (default: embedded defaults)")
	root.PersistentFlags().StringVar(&g.data, "data", "", "data directory (default ./data, or data_dir of the config)")
	root.AddCommand(serveCmd(g), rulesCmd(g), userCmd(g), queueCmd(g), bayesCmd(g), dkimCmd(g), virusCmd(), reportCmd(g), sieveCmd(g), migrateCmd(g))
	return root
}
