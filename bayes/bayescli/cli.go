package bayescli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/bayes"
)

// DB names a token database: the global one at Path (or in PostgreSQL), or the user's
// next to Path.
type DB struct {
	Path string // the global database (bayes.DefaultDBPath(dataDir))
	User string // when set, the user's own database
	// Postgres, when set, holds the global database (config bayes.postgres) instead of
	// Path; a user's database stays a file next to Path.
	Postgres string
}

func (d DB) file() (string, error) {
	if d.Path == "" {
		return "", errors.New("no database path given")
	}
	if d.User == "" {
		return d.Path, nil
	}
	return bayes.UserDBPath(d.Path, d.User)
}

// store is what the commands need of a store: the Store and where it is.
type store interface {
	bayes.Store
	Path() string
}

func (d DB) open(ctx context.Context, create bool) (store, error) {
	if d.Postgres != "" && d.User == "" {
		// no background refresh: a command's run sees the table it loaded, and its
		// own training
		return bayes.OpenPostgres(ctx, d.Postgres, bayes.PostgresOptions{RefreshInterval: -1})
	}
	p, err := d.file()
	if err != nil {
		return nil, err
	}
	if !create {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("no token database at %s (train first): %w", p, err)
		}
	}
	return bayes.OpenSQLite(ctx, p, bayes.SQLiteOptions{RefreshInterval: -1})
}

func (d DB) classifier(ctx context.Context, cfg bayes.Config, create bool) (*bayes.Classifier, store, error) {
	s, err := d.open(ctx, create)
	if err != nil {
		return nil, nil, err
	}
	c, err := bayes.New(cfg, s)
	if err == nil {
		err = c.CheckStore(ctx)
	}
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return c, s, nil
}

// TrainOptions are the options of `bayes train`.
type TrainOptions struct {
	DB      DB
	Config  bayes.Config
	Spam    []string // maildirs, mboxes, directories of messages or message files
	Ham     []string
	Untrain bool // reverse an earlier training of these messages instead
	OnError bool // train only the messages the classifier gets wrong or is unsure about
	// Progress receives a progress bar with the rate when it is a terminal (os.Stderr).
	Progress io.Writer
}

// TrainResult counts what Train did.
type TrainResult struct {
	Spam, Ham      int // messages read
	Applied        int
	AlreadyTrained int
	Relearned      int
	NotTrained     int
	Skipped        int // train-on-error: already right
	Reinforced     int // messages trained again by the train-until-no-error passes
	Elapsed        time.Duration
}

type sourced struct {
	msg   Message
	class bayes.Class
	err   error
}

// listSources lists the sources of one class and counts their messages (-1 when an
// mbox makes the count unknown). A source without messages is an error (ListSource).
func listSources(paths []string) ([]*Source, int, error) {
	total := 0
	var srcs []*Source
	for _, p := range paths {
		s, err := ListSource(p)
		if err != nil {
			return nil, 0, err
		}
		srcs = append(srcs, s)
		if n := s.Len(); n >= 0 && total >= 0 {
			total += n
		} else {
			total = -1
		}
	}
	return srcs, total, nil
}

// stream reads the sources of one class in a goroutine.
func stream(ctx context.Context, srcs []*Source, class bayes.Class) <-chan sourced {
	ch := make(chan sourced, 64)
	go func() {
		defer close(ch)
		for _, s := range srcs {
			err := s.Each(ctx, func(m Message) error {
				select {
				case ch <- sourced{msg: m, class: class}:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if err != nil {
				select {
				case ch <- sourced{err: err}:
				case <-ctx.Done():
				}
				return
			}
		}
	}()
	return ch
}

// Train trains (or untrains) the database with the given mail, alternating between
// spam and ham as a real mail stream would (which matters for train-on-error). Every
// source must hold messages: an empty folder (or one whose files are all hidden) is
// an error that names it, before anything is trained.
func Train(ctx context.Context, o TrainOptions, out io.Writer) (*TrainResult, error) {
	if len(o.Spam) == 0 && len(o.Ham) == 0 {
		return nil, errors.New("train: give --spam or --ham (or both)")
	}
	spamSrcs, ns, err := listSources(o.Spam)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	hamSrcs, nh, err := listSources(o.Ham)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	c, s, err := o.DB.classifier(ctx, o.Config, true)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	spamCh := stream(ctx, spamSrcs, bayes.Spam)
	hamCh := stream(ctx, hamSrcs, bayes.Ham)
	total := -1
	if ns >= 0 && nh >= 0 {
		total = ns + nh
	}
	bar := newProgress(o.Progress, total)
	res := &TrainResult{}
	start := time.Now()
	// the batch holds token hashes, not message bytes
	var batch []bayes.Update
	// the updates of this run, for the train-until-no-error passes at the end
	var trained []bayes.Update
	tune := !o.Untrain && !o.OnError && c.Config().TunePasses > 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		outs, err := c.Store().Apply(ctx, batch)
		if err != nil {
			return err
		}
		if tune {
			trained = append(trained, batch...)
		}
		for _, oc := range outs {
			switch oc {
			case bayes.Applied:
				res.Applied++
			case bayes.AlreadyTrained:
				res.AlreadyTrained++
			case bayes.Relearned:
				res.Relearned++
			case bayes.NotTrained:
				res.NotTrained++
			}
		}
		batch = batch[:0]
		return nil
	}
	chs := []<-chan sourced{spamCh, hamCh}
	for turn := 0; chs[0] != nil || chs[1] != nil; turn++ {
		i := turn % 2
		if chs[i] == nil {
			continue
		}
		m, ok := <-chs[i]
		if !ok {
			chs[i] = nil
			continue
		}
		if m.err != nil {
			return nil, fmt.Errorf("train: %w", m.err)
		}
		if m.class == bayes.Spam {
			res.Spam++
		} else {
			res.Ham++
		}
		if o.OnError && !o.Untrain {
			// classify against the current counts: flush what is pending first
			if err := flush(); err != nil {
				return nil, fmt.Errorf("train: %w", err)
			}
			_, trained, err := c.TrainOnError(ctx, m.msg.Raw, m.class)
			if err != nil {
				return nil, fmt.Errorf("train %s: %w", m.msg.Name, err)
			}
			if trained {
				res.Applied++
			} else {
				res.Skipped++
			}
		} else {
			if o.Untrain {
				batch = append(batch, c.UntrainUpdate(m.msg.Raw))
			} else {
				batch = append(batch, c.TrainUpdate(m.msg.Raw, m.class))
			}
			if len(batch) >= trainBatch {
				if err := flush(); err != nil {
					return nil, fmt.Errorf("train: %w", err)
				}
			}
		}
		bar.update(res.Spam + res.Ham)
	}
	if err := flush(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if tune {
		if res.Reinforced, err = c.Reinforce(ctx, trained); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	res.Elapsed = time.Since(start)
	bar.done(res.Spam + res.Ham)
	st, err := s.Stats(ctx)
	if err != nil {
		return nil, err
	}
	verb := "trained"
	if o.Untrain {
		verb = "untrained"
	}
	n := res.Spam + res.Ham
	fmt.Fprintf(out, "%s: read %d spam and %d ham in %s (%.0f msgs/s): %d applied, %d already trained, %d relearned, %d not trained, %d skipped (already right), %d reinforced\n",
		verb, res.Spam, res.Ham, res.Elapsed.Round(time.Millisecond), float64(n)/res.Elapsed.Seconds(),
		res.Applied, res.AlreadyTrained, res.Relearned, res.NotTrained, res.Skipped, res.Reinforced)
	fmt.Fprintf(out, "database %s: %d spam, %d ham, %d tokens\n", s.Path(), st.Totals.Spam, st.Totals.Ham, st.Tokens)
	return res, nil
}

// progress draws "[#####.....] n/total rate" on a terminal, at most ten times a second.
type progress struct {
	w     io.Writer
	total int
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, total int) *progress {
	if f, ok := w.(*os.File); !ok || !isTerminal(f) {
		return &progress{}
	}
	return &progress{w: w, total: total, start: time.Now()}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) update(n int) {
	if p.w == nil || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.draw(n)
}

func (p *progress) draw(n int) {
	rate := float64(n) / time.Since(p.start).Seconds()
	if p.total > 0 {
		const width = 30
		done := min(width, n*width/p.total)
		fmt.Fprintf(p.w, "\r[%s%s] %d/%d %.0f msgs/s ", strings.Repeat("#", done), strings.Repeat(".", width-done), n, p.total, rate)
	} else {
		fmt.Fprintf(p.w, "\r%d messages %.0f msgs/s ", n, rate)
	}
}

func (p *progress) done(n int) {
	if p.w == nil {
		return
	}
	p.draw(n)
	fmt.Fprintln(p.w)
}

// ClassifyOptions are the options of `bayes classify`.
type ClassifyOptions struct {
	DB      DB
	Config  bayes.Config
	Files   []string // message files, directories, maildirs or mboxes
	JSON    bool     // one JSON object per line
	Explain bool     // list the strongest tokens of each message
	Workers int      // messages scored in parallel (default GOMAXPROCS)
}

// ClassifyLine is one line of `bayes classify --json`.
type ClassifyLine struct {
	File    string  `json:"file"`
	Score   float64 `json:"score"`
	Verdict string  `json:"verdict"` // spam, unsure or ham
	Tokens  int     `json:"tokens"`
}

// Classify scores every message and prints "FILE SCORE VERDICT TOKENS" lines.
func Classify(ctx context.Context, o ClassifyOptions, out io.Writer) error {
	if len(o.Files) == 0 {
		return errors.New("classify: no files given")
	}
	c, s, err := o.DB.classifier(ctx, o.Config, false)
	if err != nil {
		return fmt.Errorf("classify: %w", err)
	}
	defer s.Close()
	// one write per batch, not per message
	bw := bufio.NewWriterSize(out, 64<<10)
	defer bw.Flush()
	out = bw
	enc := json.NewEncoder(out)
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// messages are scored in batches on all workers and printed in input order
	var batch []Message
	scores := make([]bayes.Score, 0, classifyBatch)
	flush := func() error {
		scores = scores[:len(batch)]
		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < len(batch); i += workers {
					if batch[i].Raw == nil {
						// a file not read yet: the workers read too, so that
						// reading does not leave the other cores idle
						raw, err := readLimited(batch[i].Name)
						if err != nil {
							errs[i] = err
							continue
						}
						batch[i].Raw = raw
					}
					scores[i], errs[i] = c.Classify(ctx, batch[i].Raw)
				}
			}(w)
		}
		wg.Wait()
		for i, m := range batch {
			if errs[i] != nil {
				return fmt.Errorf("%s: %w", m.Name, errs[i])
			}
			sc := scores[i]
			v := "ham"
			if sc.Spam {
				v = "spam"
			} else if sc.Unsure {
				v = "unsure"
			}
			if o.JSON {
				if err := enc.Encode(ClassifyLine{File: m.Name, Score: sc.Prob, Verdict: v, Tokens: sc.Tokens}); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(out, "%s %s %s %d\n", m.Name, strconv.FormatFloat(sc.Prob, 'g', -1, 64), v, sc.Tokens)
			if o.Explain {
				explain(ctx, c, m.Raw, out)
			}
		}
		batch = batch[:0]
		return bw.Flush()
	}
	for _, f := range o.Files {
		src, err := ListSource(f)
		if err != nil {
			return fmt.Errorf("classify: %w", err)
		}
		if names := src.fileNames(); names != nil {
			// files are read by the workers (Raw nil until then)
			for _, n := range names {
				if err := ctx.Err(); err != nil {
					return err
				}
				batch = append(batch, Message{Name: n})
				if len(batch) == classifyBatch {
					if err := flush(); err != nil {
						return fmt.Errorf("classify: %w", err)
					}
				}
			}
			continue
		}
		err = src.Each(ctx, func(m Message) error {
			batch = append(batch, m)
			if len(batch) == classifyBatch {
				return flush()
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("classify: %w", err)
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("classify: %w", err)
	}
	return nil
}

// classifyBatch is how many messages Classify reads before scoring them in parallel.
const classifyBatch = 256

// explain prints the strongest tokens of a message by name.
func explain(ctx context.Context, c *bayes.Classifier, raw []byte, out io.Writer) {
	names := map[uint64]string{}
	for _, t := range c.Tokenizer().Tokens(raw) {
		names[bayes.HashToken(t)] = t
	}
	hs, header := c.Tokenizer().HashesHeader(nil, raw)
	sc, err := c.ClassifyTokens(ctx, hs, header, true)
	if err != nil {
		return
	}
	for i, cl := range sc.Clues {
		if i == 20 {
			break
		}
		fmt.Fprintf(out, "  %.4f %q\n", cl.Prob, names[cl.Hash])
	}
}

// StatsOptions are the options of `bayes stats`.
type StatsOptions struct {
	DB   DB
	JSON bool
}

// StatsLine is the output of `bayes stats --json`.
type StatsLine struct {
	Path      string `json:"path"`
	Spam      uint32 `json:"spam"`
	Ham       uint32 `json:"ham"`
	Tokens    int    `json:"tokens"`
	Hapaxes   int    `json:"hapaxes"`
	Messages  int    `json:"tracked_messages"`
	OldestDay string `json:"oldest_token_day,omitempty"`
	Tokenizer string `json:"tokenizer"`
	SizeBytes int64  `json:"size_bytes"`
}

// Stats prints what a token database holds.
func Stats(ctx context.Context, o StatsOptions, out io.Writer) error {
	s, err := o.DB.open(ctx, false)
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	defer s.Close()
	st, err := s.Stats(ctx)
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	fp, _ := s.Meta(ctx, "tokenizer")
	l := StatsLine{Path: s.Path(), Spam: st.Totals.Spam, Ham: st.Totals.Ham, Tokens: st.Tokens, Hapaxes: st.Hapaxes,
		Messages: st.Messages, Tokenizer: fp}
	if st.OldestDay > 0 {
		l.OldestDay = time.Unix(int64(st.OldestDay)*86400, 0).UTC().Format("2006-01-02")
	}
	if fi, err := os.Stat(s.Path()); err == nil {
		l.SizeBytes = fi.Size()
	}
	if o.JSON {
		return json.NewEncoder(out).Encode(l)
	}
	size := fmt.Sprintf(" (%d bytes)", l.SizeBytes)
	if l.SizeBytes == 0 {
		size = "" // in PostgreSQL (bayes.postgres): no file
	}
	fmt.Fprintf(out, "database %s%s\ntrained: %d spam, %d ham (%d tracked for untrain)\ntokens: %d (%d seen once), oldest %s\ntokenizer settings: %s\n",
		l.Path, size, l.Spam, l.Ham, l.Messages, l.Tokens, l.Hapaxes, l.OldestDay, l.Tokenizer)
	return nil
}

// PruneOptions are the options of `bayes prune`.
type PruneOptions struct {
	DB       DB
	MaxAge   time.Duration // default 180 days
	MinCount int           // default 1: tokens seen in one message only
}

// Prune removes rare tokens not trained for MaxAge.
func Prune(ctx context.Context, o PruneOptions, out io.Writer) error {
	if o.MaxAge <= 0 {
		o.MaxAge = 180 * 24 * time.Hour
	}
	if o.MinCount <= 0 {
		o.MinCount = 1
	}
	s, err := o.DB.open(ctx, false)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	defer s.Close()
	n, err := s.Prune(ctx, bayes.PruneConfig{MaxAge: o.MaxAge, MinCount: o.MinCount})
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	fmt.Fprintf(out, "pruned %d tokens seen in at most %d messages and not trained for %s\n", n, o.MinCount, o.MaxAge)
	return nil
}

// trainBatch is how many messages Train applies in one transaction: larger batches
// write each common token once per batch instead of once per message (10000 measured
// 10% less CPU than 2000 on the SpamAssassin corpus; the batch holds only hashes).
const trainBatch = 10000
