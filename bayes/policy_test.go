package bayes

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/policy"
)

func TestPolicy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "global.db")
	// train the global database as the CLI would
	s, err := OpenSQLite(ctx, db, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := New(Config{}, s)
	if err := c.CheckStore(ctx); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(11, 12))
	for i := 0; i < 40; i++ {
		c.Train(ctx, synthMessage(r, i%2 == 0, i), map[bool]Class{true: Spam, false: Ham}[i%2 == 0])
	}
	s.Close()

	if _, err := NewPolicy(PolicyConfig{}, Deps{}); err == nil {
		t.Error("NewPolicy accepted a config without db")
	}
	if _, err := NewPolicy(PolicyConfig{DB: db, Unsure: []float64{0.9, 0.1}}, Deps{}); err == nil {
		t.Error("NewPolicy accepted unsure [0.9, 0.1]")
	}
	p, err := NewPolicy(PolicyConfig{DB: db, Autolearn: AutolearnConfig{Spam: 0.99, Ham: 0.01}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	declared := p.DeclareFacts()
	check := func(raw []byte, wantStatus policy.Status, wantReason string) policy.Result {
		tx := &policy.Transaction{Message: policy.NewMessage(raw, time.Now())}
		tx.Envelope.Rcpts = []policy.Address{policy.ParseAddress("bob@example.net")}
		res := p.CheckData(ctx, tx)
		if res.Err != nil || res.Status != wantStatus || res.Reason != wantReason {
			t.Errorf("CheckData = %v %q %v, want %v %q", res.Status, res.Reason, res.Err, wantStatus, wantReason)
		}
		for k, v := range res.Facts {
			if d, ok := declared[k]; !ok || reflect.TypeOf(d) != reflect.TypeOf(v) {
				t.Errorf("fact %s = %T, declared %T", k, v, d)
			}
		}
		if res.Score != res.Facts["score"] {
			t.Errorf("Score %v != fact score %v", res.Score, res.Facts["score"])
		}
		return res
	}
	check(synthMessage(r, true, 1000), policy.StatusFail, "bayes.spam")
	res := check(synthMessage(r, false, 1001), policy.StatusPass, "bayes.ham")
	if res.Facts["spam"] != false || res.Facts["tokens"].(int) == 0 {
		t.Errorf("facts %v", res.Facts)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// auto-learning trained both messages before Close returned
	s, err = OpenSQLite(ctx, db, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, _ := s.Stats(ctx)
	if st.Totals.Spam != 21 || st.Totals.Ham != 21 {
		t.Errorf("after autolearn: %+v, want 21 spam and 21 ham", st.Totals)
	}
}

func TestPolicyPerUser(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "global.db")
	// the global database says the vocabularies are what synthMessage says; the user
	// database says the opposite, so the per-user result is visible
	train := func(path string, invert bool) {
		s, err := OpenSQLite(ctx, path, SQLiteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		c, _ := New(Config{}, s)
		r := rand.New(rand.NewPCG(13, 14))
		for i := 0; i < 120; i++ {
			spam := i%2 == 0
			c.Train(ctx, synthMessage(r, spam, i), map[bool]Class{true: Spam, false: Ham}[spam != invert])
		}
	}
	train(db, false)
	udb, err := UserDBPath(db, "Bob@Example.NET")
	if err != nil {
		t.Fatal(err)
	}
	train(udb, true)
	p, err := NewPolicy(PolicyConfig{DB: db, PerUser: true}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := rand.New(rand.NewPCG(15, 16))
	for _, rc := range []struct {
		rcpt   string
		spam   bool
		byUser bool
	}{{"bob@example.net", false, true}, {"carol@example.net", true, false}} {
		tx := &policy.Transaction{Message: policy.NewMessage(synthMessage(r, true, 7000), time.Now())}
		tx.Envelope.Rcpts = []policy.Address{policy.ParseAddress(rc.rcpt)}
		res := p.CheckData(ctx, tx)
		if res.Facts["spam"] != rc.spam || res.Facts["user"] != rc.byUser {
			t.Errorf("%s: %v %v", rc.rcpt, res.Status, res.Facts)
		}
	}
	if _, err := UserDBPath(db, "../../etc"); err != nil {
		t.Fatal(err)
	} else if p, _ := UserDBPath(db, "../../etc"); filepath.Dir(p) != filepath.Join(dir, "users") {
		t.Errorf("user path escapes: %s", p)
	}
}

// TestPolicyConfigYAML decodes the README's example with unknown fields rejected.
func TestPolicyConfigYAML(t *testing.T) {
	const doc = `
db: /var/lib/portcullis/bayes/global.db
per_user: true
min_user_trained: 50
unsure: [0.2, 0.5]
autolearn: { spam: 0.9999, ham: 0.0001, queue_size: 100 }
classifier:
  s: 0.1
  x: 0.5
  min_dev: 0.375
  max_tokens: 150
  tokenizer: { bigrams: false, max_word: 12, headers: [from, to, subject] }
`
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	var cfg PolicyConfig
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.PerUser || cfg.Unsure[1] != 0.5 || cfg.Autolearn.Spam != 0.9999 || cfg.Classifier.MinDev != 0.375 || len(cfg.Classifier.Tokenizer.Headers) != 3 {
		t.Errorf("decoded %+v", cfg)
	}
	if _, err := NewPolicy(cfg, Deps{}); err != nil {
		t.Error(err)
	}
}
