package bayes

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policy/policytest"
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
	trainAlternating(t, c, r, 0, 40)
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
		tx.Envelope.Rcpts = []address.Address{address.Parse("bob@example.net")}
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
			c.Train(ctx, synthMessage(r, spam, i), classOf(spam != invert))
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
		tx.Envelope.Rcpts = []address.Address{address.Parse(rc.rcpt)}
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

// TestPolicyConfigYAML decodes the bayes policies of the READMEs' examples (the
// Config section of bayes/README.md and the rule file of the repository's README.md)
// as the server does, unknown keys rejected, so that the documentation cannot drift
// from the code: bayes/README.md's example, which lists every key at its default, must
// give the defaults, and its table must name every key there is.
func TestPolicyConfigYAML(t *testing.T) {
	section := policytest.ReadmeSection(t, "README.md", "## Config")
	blocks := policytest.YAMLBlocks(section)
	if len(blocks) != 1 {
		t.Fatalf("bayes/README.md: %d yaml blocks in the Config section, want 1", len(blocks))
	}
	cfgs := bayesPolicies(t, blocks[0])
	if len(cfgs) != 1 {
		t.Fatalf("bayes/README.md: %d bayes policies in the Config example, want 1", len(cfgs))
	}
	for _, cfg := range cfgs {
		p, err := NewPolicy(cfg, Deps{})
		if err != nil {
			t.Fatalf("bayes/README.md: %v", err)
		}
		def, err := NewPolicy(PolicyConfig{DB: cfg.DB}, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := New(p.cfg.Classifier, NewMemStore())
		d, _ := New(Config{}, NewMemStore())
		// the classifier's and the tokenizer's settings with defaults filled in
		filled := func(c *Classifier) Config { cc := c.Config(); cc.Tokenizer = c.Tokenizer().Config(); return cc }
		p.cfg.Classifier, def.cfg.Classifier = filled(c), filled(d)
		p.cfg.Unsure, def.cfg.Unsure = nil, nil
		// autolearn is off by default; the example shows the usual thresholds
		p.cfg.Autolearn.Spam, p.cfg.Autolearn.Ham = 0, 0
		p.cfg.PerUser = false
		if !reflect.DeepEqual(p.cfg, def.cfg) {
			t.Errorf("bayes/README.md's example is not the defaults:\n%+v\nwant\n%+v", p.cfg, def.cfg)
		}
		if c.Config().HamCutoff != cfg.Unsure[0] || c.Config().SpamCutoff != cfg.Unsure[1] {
			t.Errorf("bayes/README.md: unsure %v, default cut-offs %v %v", cfg.Unsure, c.Config().HamCutoff, c.Config().SpamCutoff)
		}
	}
	// the table names every key of PolicyConfig and no other
	var documented []string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first, _, _ := strings.Cut(line[1:], "|")
		for _, f := range strings.Split(first, "`")[1:] {
			if f = strings.TrimSpace(f); f != "" && f != "," {
				documented = append(documented, f)
			}
		}
	}
	keys := yamlKeys(reflect.TypeOf(PolicyConfig{}), "")
	slices.Sort(documented)
	if !slices.Equal(documented, keys) {
		t.Errorf("bayes/README.md's config table names %q, the config has %q", documented, keys)
	}

	// the repository README's rule file
	n := 0
	for _, b := range policytest.YAMLBlocks(policytest.ReadmeSection(t, "../README.md", "")) {
		for name, cfg := range bayesPolicies(t, b) {
			n++
			if cfg.DB == "" {
				cfg.DB = filepath.Join(t.TempDir(), "global.db") // the server's default
			}
			if _, err := NewPolicy(cfg, Deps{}); err != nil {
				t.Errorf("README.md: policy %s: %v", name, err)
			}
		}
	}
	if n == 0 {
		t.Error("README.md: no bayes policy in its examples")
	}

	// one spelling of the cut-offs: the classifier's own fields are not keys
	var cfg PolicyConfig
	if err := policytest.DecodeStrict("classifier: { spam_cutoff: 0.9 }", &cfg); err == nil {
		t.Error("classifier.spam_cutoff accepted")
	}
	for _, u := range [][]float64{{0, 0.5}, {0.6, 0.5}, {0.2, 1.1}, {0.2}} {
		if _, err := NewPolicy(PolicyConfig{DB: "x.db", Unsure: u}, Deps{}); err == nil {
			t.Errorf("unsure %v accepted", u)
		}
	}
}

// bayesPolicies decodes the policies of kind bayes of a rule file (or of a part of
// one), strictly, as the server's config does.
func bayesPolicies(t *testing.T, doc string) map[string]PolicyConfig {
	t.Helper()
	var file struct {
		Policies map[string]map[string]yaml.Node `yaml:"policies"`
	}
	if err := yaml.Unmarshal([]byte(doc), &file); err != nil {
		t.Fatalf("%v in\n%s", err, doc)
	}
	out := map[string]PolicyConfig{}
	for name, kinds := range file.Policies {
		n, ok := kinds["bayes"]
		if !ok {
			continue
		}
		b, err := yaml.Marshal(&n)
		if err != nil {
			t.Fatal(err)
		}
		var cfg PolicyConfig
		if err := policytest.DecodeStrict(string(b), &cfg); err != nil {
			t.Fatalf("policy %s: %v", name, err)
		}
		out[name] = cfg
	}
	return out
}

// yamlKeys lists the dotted yaml keys of the leaves of a config struct, sorted.
func yamlKeys(typ reflect.Type, prefix string) []string {
	var out []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			out = append(out, yamlKeys(f.Type, prefix+name+".")...)
			continue
		}
		out = append(out, prefix+name)
	}
	slices.Sort(out)
	return out
}

// Two users whose names differ only in bytes a file name cannot hold get two databases
// (they shared one when every such byte became '_'); a user whose old file was named
// after them keeps it.
func TestUserDBPathsAreDistinct(t *testing.T) {
	dir := t.TempDir()
	global := filepath.Join(dir, "global.db")
	seen := map[string]string{}
	for _, u := range []string{"a_b@x.org", "a#b@x.org", "a?b@x.org", "a b@x.org", "a%5fb@x.org", "a_5fb@x.org"} {
		p, err := UserDBPath(global, u)
		if err != nil {
			t.Fatal(err)
		}
		if other, ok := seen[p]; ok {
			t.Errorf("%q and %q share %s", u, other, p)
		}
		seen[p] = u
	}
	users := filepath.Join(dir, "users")
	if err := os.MkdirAll(users, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(users, "a_b@x.org.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if p, _ := UserDBPath(global, "a_b@x.org"); filepath.Base(p) != "a_b@x.org.db" {
		t.Errorf("a_b@x.org lost its database: %s", p)
	}
	if p, _ := UserDBPath(global, "a#b@x.org"); filepath.Base(p) == "a_b@x.org.db" {
		t.Errorf("a#b@x.org still reads a_b@x.org's database")
	}
}
