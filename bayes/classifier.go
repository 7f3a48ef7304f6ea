package bayes

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/portcullis-mail/portcullis/bayes/internal/fisher"
)

// Config tunes the classifier. A zero field means its default; the defaults were
// chosen by 10-fold cross-validation on the training split of the SpamAssassin corpus.
type Config struct {
	// Tokenizer limits how much of each message is read.
	Tokenizer TokenizerConfig `yaml:"tokenizer"`
	// S is Robinson's strength of the prior for rare tokens (default 0.1).
	S float64 `yaml:"s"`
	// X is the probability assumed for a token never seen (default 0.5).
	X float64 `yaml:"x"`
	// MinDev excludes tokens with |f(w) − 0.5| below it from combining (default 0.375:
	// only tokens with f < 0.125 or f > 0.875 count).
	MinDev float64 `yaml:"min_dev"`
	// MaxTokens is how many of the strongest tokens are combined (default 400).
	MaxTokens int `yaml:"max_tokens"`
	// HamCutoff and SpamCutoff bound the unsure band: a score ≥ SpamCutoff is spam, one
	// below HamCutoff is ham, anything in between is unsure (defaults 0.2 and 0.5).
	// Chi-square combining puts messages with strong evidence both ways near 0.5.
	// In the policy's configuration they are written unsure: [ham, spam]
	// (PolicyConfig.Unsure), the one spelling of them.
	HamCutoff  float64 `yaml:"-"`
	SpamCutoff float64 `yaml:"-"`
	// MinTrained is the number of messages of each class needed before the classifier
	// gives an opinion; until then every score is 0.5 (default 10).
	MinTrained int `yaml:"min_trained"`
	// TunePasses and TuneMargin set the "train until no error" passes that follow a
	// bulk training (Reinforce: `bayes train`, `bayes eval`): each pass trains once more
	// every message of the batch scored less than TuneMargin from its class's end of
	// the scale (spam below 1 − margin, ham at or above margin). Defaults 3 and 0.001;
	// TunePasses < 0 turns it off. Untraining reverses every count exactly.
	TunePasses int     `yaml:"tune_passes"`
	TuneMargin float64 `yaml:"tune_margin"`
	// ESF is the effective size factor of the chi-square combining (as bogofilter's):
	// the tokens of a message are not independent evidence, so the combined tokens
	// count as ESF times their number (default 0.15; 1 turns it off).
	ESF float64 `yaml:"esf"`
	// HeaderWeight weighs the evidence of the clues from the top-level header fields
	// (field words, field names, Received hosts, Message-ID shape) against the body's
	// in the combining: their log probabilities and their share of the degrees of
	// freedom are multiplied by it (default 1.5; 1 turns it off). The store is unaffected.
	HeaderWeight float64 `yaml:"header_weight"`
	// MidBand is the half-width of the band around 0.5 whose chi-square scores are
	// re-ranked by a logistic combination of the four chi-square tails of the header
	// and body clues taken apart (MidWeights): scores from 0.5 − MidBand to
	// 0.5 + MidBand (exclusive) become 0.5 − MidBand + 2·MidBand·σ(z), so they stay in
	// the band and a message is on the spam side of 0.5 when z ≥ 0 (default 0.15: the
	// band 0.35–0.65; negative turns it off).
	MidBand float64 `yaml:"mid_band"`
	// MidWeights are c₀…c₄ of z = c₀ + c₁·ln(1 − ln Q_S,body) + c₂·ln(1 − ln Q_H,body)
	// + c₃·ln(1 − ln Q_S,header) + c₄·ln(1 − ln Q_H,header) (default
	// DefaultMidWeights, fitted by logistic regression on the cross-validated outputs
	// of the training split; all zero means the default).
	MidWeights [5]float64 `yaml:"mid_weights"`
}

// DefaultMidWeights are the default Config.MidWeights: a logistic regression (ham
// weighted 10 to 1, L2 penalty 1 on the standardized weights) of the class on the
// four tail features of the 10-fold cross-validated outputs of the training split,
// pooled over 10 fold assignments (the usual one and 9 shuffled; the fitting tool is
// in the git history, bayes/cmd/bayes-exp -repeat).
var DefaultMidWeights = [5]float64{-2.20, 2.48, -0.758, 2.40, -2.94}

// Defaults of Config, measured (docs/bayes-experiments.md).
const (
	DefaultS            = 0.1
	DefaultX            = 0.5
	DefaultMinDev       = 0.375
	DefaultMaxTokens    = 400
	DefaultHamCutoff    = 0.2
	DefaultSpamCutoff   = 0.5
	DefaultMinTrained   = 10
	DefaultTunePasses   = 3
	DefaultTuneMargin   = 0.001
	DefaultESF          = 0.15
	DefaultHeaderWeight = 1.5
	DefaultMidBand      = 0.15
)

func (c Config) withDefaults() Config {
	if c.S <= 0 {
		c.S = DefaultS
	}
	if c.X <= 0 || c.X >= 1 {
		c.X = DefaultX
	}
	if c.MinDev <= 0 {
		c.MinDev = DefaultMinDev
	}
	if c.MaxTokens <= 0 {
		c.MaxTokens = DefaultMaxTokens
	}
	if c.HamCutoff <= 0 {
		c.HamCutoff = DefaultHamCutoff
	}
	if c.SpamCutoff <= 0 {
		c.SpamCutoff = DefaultSpamCutoff
	}
	if c.MinTrained <= 0 {
		c.MinTrained = DefaultMinTrained
	}
	if c.TunePasses == 0 {
		c.TunePasses = DefaultTunePasses
	}
	if c.TuneMargin <= 0 || c.TuneMargin >= 0.5 {
		c.TuneMargin = DefaultTuneMargin
	}
	if c.ESF <= 0 || c.ESF > 1 {
		c.ESF = DefaultESF
	}
	if c.HeaderWeight <= 0 {
		c.HeaderWeight = DefaultHeaderWeight
	}
	if c.MidBand == 0 {
		c.MidBand = DefaultMidBand
	}
	if c.MidWeights == ([5]float64{}) {
		c.MidWeights = DefaultMidWeights
	}
	return c
}

func (c Config) validate() error {
	if c.MinDev >= 0.5 {
		return fmt.Errorf("bayes: min_dev %v must be below 0.5", c.MinDev)
	}
	if c.MidBand >= 0.5 {
		return fmt.Errorf("bayes: mid_band %v must be below 0.5", c.MidBand)
	}
	if c.HamCutoff > c.SpamCutoff || c.SpamCutoff > 1 {
		return fmt.Errorf("bayes: need 0 < HamCutoff (%v) <= SpamCutoff (%v) <= 1", c.HamCutoff, c.SpamCutoff)
	}
	return nil
}

// Classifier scores and trains messages against a Store. It is safe for concurrent use.
type Classifier struct {
	cfg   Config
	mid   *midBand // nil: MidBand off
	tok   *Tokenizer
	store Store
	bufs  sync.Pool
}

// New returns a classifier over store. It does no I/O; CheckStore verifies that the
// store was trained with the same tokenizer settings.
func New(cfg Config, store Store) (*Classifier, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, fmt.Errorf("bayes: nil store")
	}
	c := &Classifier{cfg: cfg, tok: NewTokenizer(cfg.Tokenizer), store: store}
	if cfg.MidBand > 0 {
		c.mid = &midBand{lo: 0.5 - cfg.MidBand, hi: 0.5 + cfg.MidBand, coef: cfg.MidWeights}
	}
	c.bufs.New = func() any { return &buffers{} }
	return c, nil
}

// Config returns the configuration with defaults filled in.
func (c *Classifier) Config() Config { return c.cfg }

// Tokenizer returns the classifier's tokenizer.
func (c *Classifier) Tokenizer() *Tokenizer { return c.tok }

// Store returns the classifier's store.
func (c *Classifier) Store() Store { return c.store }

const fingerprintKey = "tokenizer"

// CheckStore records the tokenizer fingerprint in an empty store, and fails if the
// store was trained with different tokenizer settings (its counts would not match).
func (c *Classifier) CheckStore(ctx context.Context) error {
	fp := Fingerprint()
	have, err := c.store.Meta(ctx, fingerprintKey)
	if err != nil {
		return fmt.Errorf("bayes: read tokenizer fingerprint: %w", err)
	}
	if have == fp {
		return nil
	}
	st, err := c.store.Stats(ctx)
	if err != nil {
		return fmt.Errorf("bayes: store stats: %w", err)
	}
	if have != "" && st.Totals.Spam+st.Totals.Ham > 0 {
		return fmt.Errorf("bayes: store was trained with tokenizer settings %s, these are %s: retrain or restore the settings", have, fp)
	}
	return c.store.SetMeta(ctx, fingerprintKey, fp)
}

type buffers struct {
	seen   hashSet // the clues already taken (scoreRepeats)
	hashes []uint64
	counts []Counts
	clues  []clue
	fs     []float64
	hfs    []float64
}

type clue struct {
	h   uint64
	f   float64
	dev float64
	hdr bool // from the message header (HeaderWeight)
}

// Score is the classifier's opinion of one message.
type Score struct {
	Prob   float64 // probability of spam in [0,1]
	Spam   bool    // Prob ≥ SpamCutoff
	Unsure bool    // HamCutoff ≤ Prob < SpamCutoff
	Tokens int     // tokens combined
	// Clues are the combined tokens, strongest first, when asked for (Explain).
	Clues []Clue
}

// Clue is one token's contribution.
type Clue struct {
	Hash uint64
	Prob float64
}

// Classify scores a raw message.
func (c *Classifier) Classify(ctx context.Context, raw []byte) (Score, error) {
	b := c.bufs.Get().(*buffers)
	defer c.bufs.Put(b)
	var header int
	b.hashes, header = c.tok.hashesAll(b.hashes[:0], raw)
	return c.scoreRepeats(ctx, b, b.hashes, header, false, true)
}

// ClassifyTokens scores a message given its distinct token hashes, the first header
// of them from its header fields (Tokenizer.HashesHeader).
func (c *Classifier) ClassifyTokens(ctx context.Context, hashes []uint64, header int, explain bool) (Score, error) {
	b := c.bufs.Get().(*buffers)
	defer c.bufs.Put(b)
	return c.scoreRepeats(ctx, b, hashes, header, explain, false)
}

// scoreRepeats scores the tokens hashes; with repeats, hashes may hold a token more
// than once and only its first occurrence counts (the clues are deduplicated, in the
// order of their first occurrence, so the score is the same as of the distinct
// tokens, to the bit).
// The first header hashes come from the header fields (HeaderWeight).
func (c *Classifier) scoreRepeats(ctx context.Context, b *buffers, hashes []uint64, header int, explain, repeats bool) (Score, error) {
	if cap(b.counts) < len(hashes) {
		b.counts = make([]Counts, len(hashes), 2*len(hashes))
	}
	counts := b.counts[:len(hashes)]
	tot, err := c.store.Lookup(ctx, hashes, counts)
	if err != nil {
		return Score{}, fmt.Errorf("bayes: token lookup: %w", err)
	}
	sc := Score{}
	if int(tot.Spam) < c.cfg.MinTrained || int(tot.Ham) < c.cfg.MinTrained {
		sc.Prob = 0.5
		sc.Unsure = true
		return sc, nil
	}
	clues := b.clues[:0]
	// f(w) lies between x and p(w), so a token with both within min_dev of 0.5 cannot
	// count: tested first without a division, with p(w) − 0.5 compared through
	// cross-multiplied counts (B = spam·N_ham, G = ham·N_spam, p = B/(B+G)) and a
	// margin for rounding; only the others get their f computed exactly
	lo, hi := (0.5-c.cfg.MinDev)*(1+1e-9), (0.5+c.cfg.MinDev)*(1-1e-9)
	prefilter := math.Abs(c.cfg.X-0.5) < c.cfg.MinDev && tot.Spam > 0 && tot.Ham > 0
	nS, nH := float64(tot.Spam), float64(tot.Ham)
	for i, h := range hashes {
		ct := counts[i]
		if ct.Spam+ct.Ham == 0 {
			continue // never trained
		}
		if prefilter {
			B, G := float64(ct.Spam)*nH, float64(ct.Ham)*nS
			if sum := B + G; B > lo*sum && B < hi*sum {
				continue
			}
		}
		f := fisher.Robinson(ct.Spam, ct.Ham, tot.Spam, tot.Ham, c.cfg.S, c.cfg.X)
		dev := math.Abs(f - 0.5)
		if dev < c.cfg.MinDev {
			continue
		}
		clues = append(clues, clue{h: h, f: f, dev: dev, hdr: i < header})
	}
	if repeats {
		b.seen.clear()
		k := 0
		for _, cl := range clues {
			if b.seen.insert(cl.h) {
				clues[k] = cl
				k++
			}
		}
		clues = clues[:k]
	}
	if explain {
		slices.SortFunc(clues, clueOrder)
	}
	if len(clues) > c.cfg.MaxTokens {
		// keep the strongest: a partial selection, cheaper than sorting all
		selectTop(clues, c.cfg.MaxTokens)
		clues = clues[:c.cfg.MaxTokens]
	}
	fs, hfs := b.fs[:0], b.hfs[:0]
	for _, cl := range clues {
		if cl.hdr {
			hfs = append(hfs, cl.f)
		} else {
			fs = append(fs, cl.f)
		}
	}
	sc.Prob = fisherMid(fs, hfs, c.cfg.ESF, c.cfg.HeaderWeight, c.mid)
	sc.Tokens = len(clues)
	// no evidence at all is unsure, even when the spam cut-off is 0.5
	sc.Spam = sc.Prob >= c.cfg.SpamCutoff && len(clues) > 0
	sc.Unsure = !sc.Spam && sc.Prob >= c.cfg.HamCutoff
	if explain {
		sc.Clues = make([]Clue, len(clues))
		for i, cl := range clues {
			sc.Clues[i] = Clue{Hash: cl.h, Prob: cl.f}
		}
	}
	b.clues, b.fs, b.hfs = clues, fs, hfs
	return sc, nil
}

// clueOrder puts the strongest clue first; ties are broken by hash so that the
// selection is deterministic.
func clueOrder(a, b clue) int { return fisher.Stronger(a.dev, a.h, b.dev, b.h) }

// selectTop reorders cs so that its first k elements are the k first in clueOrder
// (quickselect with median-of-three pivots; the order within them is unspecified).
func selectTop(cs []clue, k int) {
	lo, hi := 0, len(cs)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		// median of three into cs[hi] as the pivot
		if clueOrder(cs[mid], cs[lo]) < 0 {
			cs[mid], cs[lo] = cs[lo], cs[mid]
		}
		if clueOrder(cs[hi], cs[lo]) < 0 {
			cs[hi], cs[lo] = cs[lo], cs[hi]
		}
		if clueOrder(cs[mid], cs[hi]) < 0 {
			cs[mid], cs[hi] = cs[hi], cs[mid]
		}
		pivot := cs[hi]
		i := lo
		for j := lo; j < hi; j++ {
			if clueOrder(cs[j], pivot) < 0 {
				cs[i], cs[j] = cs[j], cs[i]
				i++
			}
		}
		cs[i], cs[hi] = cs[hi], cs[i]
		switch {
		case i == k || i == k-1:
			return
		case i < k:
			lo = i + 1
		default:
			hi = i - 1
		}
	}
}

// Digest identifies a message for training: a hash of its Message-ID and its body
// (the bytes after the header), so that header fields added in transit do not matter.
func Digest(raw []byte) uint64 {
	fields, body := splitHeader(nil, raw, 512)
	h := hashBytes(fnvOffset, trimSpace(headerValue(fields, "message-id")))
	h = hashString(h, "\x00")
	for _, c := range body {
		h ^= uint64(c)
		h *= fnvPrime
	}
	if h == 0 {
		h = 1
	}
	return h
}

// Example is a message to train with its class.
type Example struct {
	Raw   []byte
	Class Class
}

// Train trains one message as class. Training the same message again is a no-op;
// training it as the other class moves it.
func (c *Classifier) Train(ctx context.Context, raw []byte, class Class) (Outcome, error) {
	out, err := c.TrainBatch(ctx, []Example{{Raw: raw, Class: class}})
	if err != nil {
		return 0, err
	}
	return out[0], nil
}

// TrainBatch trains several messages in one store transaction.
func (c *Classifier) TrainBatch(ctx context.Context, exs []Example) ([]Outcome, error) {
	ups := make([]Update, len(exs))
	for i, ex := range exs {
		if ex.Class != Spam && ex.Class != Ham {
			return nil, fmt.Errorf("bayes: train: invalid class %v", ex.Class)
		}
		ups[i] = c.TrainUpdate(ex.Raw, ex.Class)
	}
	out, err := c.store.Apply(ctx, ups)
	if err != nil {
		return nil, fmt.Errorf("bayes: train: %w", err)
	}
	return out, nil
}

// TrainUpdate returns the store update that trains raw as class, for callers that
// batch many messages without keeping their bytes (Store().Apply applies them).
func (c *Classifier) TrainUpdate(raw []byte, class Class) Update {
	hs, header := c.tok.HashesHeader(nil, raw)
	return Update{Class: class, Digest: Digest(raw), Tokens: hs, Header: header}
}

// UntrainUpdate returns the store update that untrains raw.
func (c *Classifier) UntrainUpdate(raw []byte) Update {
	hs, header := c.tok.HashesHeader(nil, raw)
	return Update{Untrain: true, Digest: Digest(raw), Tokens: hs, Header: header}
}

// Untrain exactly reverses an earlier training of raw (as whichever class it was
// trained). It returns NotTrained if the message was never trained.
func (c *Classifier) Untrain(ctx context.Context, raw []byte) (Outcome, error) {
	out, err := c.store.Apply(ctx, []Update{c.UntrainUpdate(raw)})
	if err != nil {
		return 0, fmt.Errorf("bayes: untrain: %w", err)
	}
	return out[0], nil
}

// TrainOnError classifies raw and trains it as class only if the classifier got it
// wrong or was unsure. It returns the score before training and whether it trained.
func (c *Classifier) TrainOnError(ctx context.Context, raw []byte, class Class) (Score, bool, error) {
	sc, err := c.Classify(ctx, raw)
	if err != nil {
		return sc, false, err
	}
	right := (class == Spam && sc.Spam) || (class == Ham && !sc.Spam && !sc.Unsure)
	if right {
		return sc, false, nil
	}
	if _, err := c.Train(ctx, raw, class); err != nil {
		return sc, false, err
	}
	return sc, true, nil
}

// Reinforce runs the Config's "train until no error" passes (TUNE, as DSPAM calls
// it) over messages just trained, given as their training updates (TrainUpdate, with
// digests so that untraining later reverses them exactly). Each pass scores every
// message against the current counts and trains once more, in one store transaction,
// those on the wrong side of the margin; it stops early when none is. It returns how
// many reinforcements it applied. Measured on the training split by 10-fold
// cross-validation: 1 − ROC area 0.000158 without, 0.000136 with the defaults.
func (c *Classifier) Reinforce(ctx context.Context, ups []Update) (int, error) {
	n := 0
	tot, err := c.store.Lookup(ctx, nil, nil)
	if err != nil {
		return 0, fmt.Errorf("bayes: reinforce: %w", err)
	}
	if int(tot.Spam) < c.cfg.MinTrained || int(tot.Ham) < c.cfg.MinTrained {
		return 0, nil // every score would be 0.5
	}
	for pass := 0; pass < c.cfg.TunePasses; pass++ {
		var again []Update
		for _, u := range ups {
			if u.Untrain || (u.Class != Spam && u.Class != Ham) {
				continue
			}
			sc, err := c.ClassifyTokens(ctx, u.Tokens, u.Header, false)
			if err != nil {
				return n, err
			}
			if (u.Class == Spam && sc.Prob < 1-c.cfg.TuneMargin) || (u.Class == Ham && sc.Prob >= c.cfg.TuneMargin) {
				r := u
				r.Reinforce = true
				again = append(again, r)
			}
		}
		if len(again) == 0 {
			break
		}
		out, err := c.store.Apply(ctx, again)
		if err != nil {
			return n, fmt.Errorf("bayes: reinforce: %w", err)
		}
		for _, o := range out {
			if o == Reinforced {
				n++
			}
		}
	}
	return n, nil
}
