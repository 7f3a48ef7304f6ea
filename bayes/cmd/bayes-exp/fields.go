package main

import (
	"context"
	"fmt"
	"log"
	"math"
	"strings"

	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/bayes/bayescli"
	"github.com/portcullis-mail/portcullis/bayes/internal/fisher"
)

// fieldExperiments measures, by k-fold on the training split, ways of treating header
// tokens apart from body tokens in the chi-square combining: a weight on the header
// tokens' evidence, a cap on the clues one header field may give, and a cap on the
// header clues in all. Training (with the TUNE passes) is the package's own; the
// clues of each test message are taken from an explaining classifier with no
// max_tokens limit and combined here, so the first row must match the classifier
// with header_weight 1 (the TUNE passes here always score unweighted; bayes-eval
// tune --grid header-weight measures the weighting in the classifier itself).
func fieldExperiments(ctx context.Context, spam, ham [][]byte, k int) {
	cfg := bayes.Config{HeaderWeight: 1}
	tok := bayes.NewTokenizer(cfg.Tokenizer)
	headerPrefix := map[string]bool{"h": true, "rcvd": true}
	for _, h := range bayes.DefaultHeaders {
		headerPrefix[h] = true
	}
	// the header field (group) of each token hash; "" for body tokens
	group := map[uint64]string{}
	var sh, hh [][]uint64
	for _, set := range []struct {
		msgs [][]byte
		dst  *[][]uint64
	}{{spam, &sh}, {ham, &hh}} {
		for _, m := range set.msgs {
			*set.dst = append(*set.dst, tok.Hashes(nil, m))
			for _, s := range tok.Tokens(m) {
				g := ""
				if p, _, ok := strings.Cut(s, ":"); ok && headerPrefix[p] {
					g = p
				} else if strings.HasPrefix(s, "shape:mid:") {
					g = "message-id"
				}
				group[bayes.HashToken(s)] = g
			}
		}
	}
	type variant struct {
		name       string
		hw         float64 // weight of header clues
		perField   int     // at most this many clues of one header field (0: no cap)
		allHeaders int     // at most this many header clues in all (0: no cap)
	}
	vs := []variant{{"default (re-combined)", 1, 0, 0}}
	for _, w := range []float64{0.5, 0.75, 1.25, 1.5, 1.75, 2, 2.5, 3} {
		vs = append(vs, variant{fmt.Sprintf("header weight %g", w), w, 0, 0})
	}
	for _, c := range []int{3, 5, 10, 20, 40} {
		vs = append(vs, variant{fmt.Sprintf("at most %d clues per header field", c), 1, c, 0})
	}
	for _, c := range []int{10, 20, 40, 80} {
		vs = append(vs, variant{fmt.Sprintf("at most %d header clues", c), 1, 0, c})
	}
	// clues per message, strongest first, from k-fold training
	clues := make([][]bayes.Clue, len(sh)+len(hh))
	for f := 0; f < k; f++ {
		store := bayes.NewMemStore()
		c, err := bayes.New(cfg, store)
		if err != nil {
			log.Fatal(err)
		}
		all := cfg
		all.MaxTokens = 1 << 30
		ca, err := bayes.New(all, store)
		if err != nil {
			log.Fatal(err)
		}
		var ups []bayes.Update
		for i, h := range sh {
			if i%k != f {
				ups = append(ups, bayes.Update{Class: bayes.Spam, Tokens: h})
			}
		}
		for i, h := range hh {
			if i%k != f {
				ups = append(ups, bayes.Update{Class: bayes.Ham, Tokens: h})
			}
		}
		if _, err := store.Apply(ctx, ups); err != nil {
			log.Fatal(err)
		}
		if _, err := c.Reinforce(ctx, ups); err != nil {
			log.Fatal(err)
		}
		for i, h := range append(append([][]uint64{}, sh...), hh...) {
			j := i
			if i >= len(sh) {
				j = i - len(sh)
			}
			if j%k != f {
				continue
			}
			sc, err := ca.ClassifyTokens(ctx, h, 0, true)
			if err != nil {
				log.Fatal(err)
			}
			clues[i] = sc.Clues
		}
	}
	for _, v := range vs {
		scores := make([]bayescli.Scored, len(clues))
		for i, cs := range clues {
			per := map[string]int{}
			nh := 0
			var lnS, lnH, wsum float64
			n := 0
			for _, cl := range cs {
				if n == bayes.DefaultMaxTokens {
					break
				}
				g := group[cl.Hash]
				w := 1.0
				if g != "" {
					if v.perField > 0 && per[g] >= v.perField || v.allHeaders > 0 && nh >= v.allHeaders {
						continue
					}
					per[g]++
					nh++
					w = v.hw
				}
				n++
				lnS += w * math.Log(1-cl.Prob)
				lnH += w * math.Log(cl.Prob)
				wsum += w
			}
			scores[i] = bayescli.Scored{Prob: combine(lnS, lnH, wsum, n, bayes.DefaultESF), Spam: i < len(sh)}
		}
		fp, fn := 0, 0
		for _, s := range scores {
			if s.Spam && s.Prob < 0.5 {
				fn++
			}
			if !s.Spam && s.Prob >= 0.5 {
				fp++
			}
		}
		report(fmt.Sprintf("%s (%d/%d at 0.5)", v.name, fp, fn), scores)
	}
}

// combine is the package's chi-square combining with an effective size factor, of the
// weighted log sums of n clues (weights summing to wsum).
func combine(lnS, lnH, wsum float64, n int, esf float64) float64 {
	if n == 0 {
		return 0.5
	}
	return fisher.Score(fisher.Tails(lnS, lnH, wsum, esf))
}
