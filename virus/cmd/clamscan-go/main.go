// Command clamscan-go scans files with clamd through the virus package, like
// clamdscan --stream; it exists for bench/clamav.sh until `portcullis virus scan` is wired.
//
//	clamscan-go -addr tcp:127.0.0.1:3310 [-j 8] [-f list.txt] [FILE...]
//	clamscan-go -addr unix:/run/clamav/clamd.ctl -ping
//
// The exit status follows clamdscan: 0 clean, 1 infected, 2 errors.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/virus"
)

func main() {
	var (
		addrs     = flag.String("addr", "unix:/run/clamav/clamd.ctl", "clamd addresses, comma-separated (unix:/path, tcp:host:port)")
		jobs      = flag.Int("j", 1, "files scanned concurrently")
		list      = flag.String("f", "", "read file names from this file, one per line")
		timeout   = flag.Duration("timeout", 0, "timeout of one scan (0: default)")
		noSession = flag.Bool("no-sessions", false, "one connection per scan instead of IDSESSION reuse")
		ping      = flag.Bool("ping", false, "ping the daemons instead of scanning")
		infected  = flag.Bool("i", false, "print only infected files and errors")
	)
	flag.Parse()
	c, err := virus.NewClient(virus.Config{Addrs: strings.Split(*addrs, ","), Timeout: *timeout, NoSessions: *noSession})
	if err != nil {
		fatal(err)
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *ping {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := virus.PingAll(pctx, c, os.Stdout); err != nil {
			fatal(err)
		}
		return
	}
	paths := flag.Args()
	if *list != "" {
		f, err := os.Open(*list)
		if err != nil {
			fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" {
				paths = append(paths, l)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			fatal(err)
		}
	}
	if len(paths) == 0 {
		fatal(fmt.Errorf("no files to scan (give FILE... or -f LIST; - is standard input)"))
	}
	w := bufio.NewWriter(os.Stdout)
	sum, err := virus.ScanFiles(ctx, c, paths, w, virus.ScanOptions{Concurrency: *jobs, InfectedOnly: *infected})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	fmt.Fprintln(os.Stderr, sum)
	if err != nil {
		fatal(err)
	}
	os.Exit(sum.ExitCode())
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "clamscan-go:", err)
	os.Exit(2)
}
