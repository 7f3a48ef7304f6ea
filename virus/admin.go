package virus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Summary counts the outcome of ScanFiles.
type Summary struct {
	Scanned  int // files with a verdict (clean or infected)
	Infected int
	TooLarge int
	Errors   int // files that could not be scanned (unreadable, no daemon)
	Elapsed  time.Duration
}

// ExitCode returns clamdscan's exit status convention: 0 all clean, 1 something infected,
// 2 some file could not be scanned.
func (s Summary) ExitCode() int {
	switch {
	case s.Errors > 0 || s.TooLarge > 0:
		return 2
	case s.Infected > 0:
		return 1
	}
	return 0
}

func (s Summary) String() string {
	rate := 0.0
	if s.Elapsed > 0 {
		rate = float64(s.Scanned+s.TooLarge+s.Errors) / s.Elapsed.Seconds()
	}
	return fmt.Sprintf("scanned %d, infected %d, too large %d, errors %d in %s (%.1f files/s)",
		s.Scanned, s.Infected, s.TooLarge, s.Errors, s.Elapsed.Round(time.Millisecond), rate)
}

// ScanOptions tunes ScanFiles.
type ScanOptions struct {
	// Concurrency is the number of files scanned at once (default 1).
	Concurrency int
	// InfectedOnly prints only infected files and errors, like clamdscan --infected.
	InfectedOnly bool
}

// ScanFiles scans each file (or standard input for "-") and writes one line per file to
// out, in the order given, in clamdscan's format:
//
//	path: OK
//	path: Win.Test.EICAR_HDB-1 FOUND
//	path: ERROR: why
//
// The returned error is only for failing to write to out; per-file failures are counted in
// the Summary (see ExitCode).
func ScanFiles(ctx context.Context, c *Client, paths []string, out io.Writer, opts ScanOptions) (Summary, error) {
	start := time.Now()
	workers := max(1, min(opts.Concurrency, len(paths)))
	var (
		mu      sync.Mutex
		sum     Summary
		lines   = make([]string, len(paths))
		ready   = make([]bool, len(paths))
		cursor  int
		werr    error
		jobs    = make(chan int)
		wg      sync.WaitGroup
		emitted = func() { // print finished lines in input order
			for cursor < len(paths) && ready[cursor] {
				if lines[cursor] != "" && werr == nil {
					_, werr = io.WriteString(out, lines[cursor])
				}
				lines[cursor] = ""
				cursor++
			}
		}
	)
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				line, kind := scanPath(ctx, c, paths[i])
				mu.Lock()
				switch kind {
				case ReplyOK:
					sum.Scanned++
					if opts.InfectedOnly {
						line = ""
					}
				case ReplyFound:
					sum.Scanned++
					sum.Infected++
				case ReplySizeLimit:
					sum.TooLarge++
				default:
					sum.Errors++
				}
				lines[i], ready[i] = line, true
				emitted()
				mu.Unlock()
			}
		})
	}
	for i := range paths {
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	sum.Elapsed = time.Since(start)
	if werr != nil {
		return sum, fmt.Errorf("virus: writing scan results: %w", werr)
	}
	if err := ctx.Err(); err != nil {
		return sum, fmt.Errorf("virus: scan interrupted: %w", err)
	}
	return sum, nil
}

func scanPath(ctx context.Context, c *Client, path string) (string, ReplyKind) {
	var r io.Reader = os.Stdin
	name := path
	if path == "-" {
		name = "stdin"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Sprintf("%s: ERROR: %v\n", name, err), ReplyError
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return fmt.Sprintf("%s: ERROR: is a directory\n", name), ReplyError
		}
		r = f
	}
	res, err := c.Scan(ctx, r)
	switch {
	case errors.Is(err, ErrTooLarge):
		return fmt.Sprintf("%s: ERROR: %v\n", name, oneLine(err)), ReplySizeLimit
	case err != nil:
		return fmt.Sprintf("%s: ERROR: %v\n", name, oneLine(err)), ReplyError
	case res.Infected:
		return fmt.Sprintf("%s: %s FOUND\n", name, res.Signature), ReplyFound
	}
	return name + ": OK\n", ReplyOK
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// PingAll pings every daemon of c and writes one line per daemon to out:
//
//	tcp:127.0.0.1:3310: PONG 0.4ms ClamAV 1.4.6/27821/Mon Nov 23 09:00:00 2026
//	unix:/run/clamav/clamd.ctl: ERROR: connect: no such file or directory
//
// It returns an error naming the daemons that did not answer.
func PingAll(ctx context.Context, c *Client, out io.Writer) error {
	var failed []string
	for _, st := range c.Ping(ctx) {
		var err error
		if st.Err != nil {
			failed = append(failed, st.Addr)
			_, err = fmt.Fprintf(out, "%s: ERROR: %s\n", st.Addr, oneLine(st.Err))
		} else {
			_, err = fmt.Fprintf(out, "%s: PONG %s %s\n", st.Addr, st.RTT.Round(10*time.Microsecond), st.Version)
		}
		if err != nil {
			return fmt.Errorf("virus: writing ping results: %w", err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("virus: %d of %d clamd daemons did not answer PING: %s", len(failed), len(c.daemons), strings.Join(failed, ", "))
	}
	return nil
}
