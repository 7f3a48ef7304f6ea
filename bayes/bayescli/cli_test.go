package bayescli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/bayes"
)

func synth(r *rand.Rand, spam bool, id int) string {
	vocab := []string{"meeting", "project", "review", "patch", "kernel", "release", "thanks", "lunch"}
	if spam {
		vocab = []string{"viagra", "winner", "casino", "mortgage", "cheap", "offer", "money", "click"}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: s%d@example.org\nSubject: %s\nMessage-ID: <%d@example.org>\n\n", id, vocab[r.IntN(8)], id)
	for i := 0; i < 25; i++ {
		b.WriteString(vocab[r.IntN(8)] + " ")
	}
	fmt.Fprintf(&b, "\nword%d\n", id)
	return b.String()
}

// mailboxes writes n spam as a maildir and n ham as an mbox (with a ">From " line
// to unescape), and returns their paths.
func mailboxes(t *testing.T, n, seed int) (spam, ham string) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(seed), 1))
	spam = filepath.Join(dir, "spam")
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(spam, sub), 0o755)
	}
	for i := 0; i < n; i++ {
		os.WriteFile(filepath.Join(spam, []string{"cur", "new"}[i%2], fmt.Sprintf("%d.msg:2,S", i)), []byte(synth(r, true, seed*1000+i)), 0o644)
	}
	var mb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&mb, "From sender@example.org Mon Sep  9 12:21:16 2002\n%s>From the archive\n\n", synth(r, false, seed*1000+500+i))
	}
	ham = filepath.Join(dir, "ham.mbox")
	os.WriteFile(ham, []byte(mb.String()), 0o644)
	return spam, ham
}

func TestTrainClassifyStats(t *testing.T) {
	ctx := context.Background()
	spam, ham := mailboxes(t, 30, 1)
	db := DB{Path: filepath.Join(t.TempDir(), "bayes", "global.db")}
	var out bytes.Buffer
	if err := Classify(ctx, ClassifyOptions{DB: db, Files: []string{spam}}, &out); err == nil {
		t.Error("classify without a database succeeded")
	}
	res, err := Train(ctx, TrainOptions{DB: db, Spam: []string{spam}, Ham: []string{ham}, Progress: &out}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Spam != 30 || res.Ham != 30 || res.Applied != 60 {
		t.Fatalf("train: %+v\n%s", res, out.String())
	}
	// training left the snapshot that the next process loads the tokens from
	if _, err := os.Stat(db.Path + ".snap"); err != nil {
		t.Errorf("no token snapshot after training: %v", err)
	}
	// again: everything is already trained
	res, err = Train(ctx, TrainOptions{DB: db, Spam: []string{spam}, Ham: []string{ham}}, &out)
	if err != nil || res.AlreadyTrained != 60 {
		t.Fatalf("retrain: %+v %v", res, err)
	}
	// the mbox split unescaped ">From " and dropped the envelope line
	src, _ := ListSource(ham)
	src.Each(ctx, func(m Message) error {
		if bytes.HasPrefix(m.Raw, []byte("From ")) || !bytes.Contains(m.Raw, []byte("\nFrom the archive")) {
			t.Errorf("mbox message %s: %q", m.Name, m.Raw[:40])
		}
		return nil
	})

	nspam, nham := mailboxes(t, 5, 2)
	out.Reset()
	if err := Classify(ctx, ClassifyOptions{DB: db, Files: []string{nspam, nham}, JSON: true}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 10 {
		t.Fatalf("%d lines:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		var cl ClassifyLine
		if err := json.Unmarshal([]byte(l), &cl); err != nil {
			t.Fatal(err)
		}
		want := "ham"
		if strings.Contains(cl.File, "/spam/") {
			want = "spam"
		}
		if cl.Verdict != want {
			t.Errorf("%s: %s %v, want %s", cl.File, cl.Verdict, cl.Score, want)
		}
	}
	out.Reset()
	if err := Stats(ctx, StatsOptions{DB: db, JSON: true}, &out); err != nil {
		t.Fatal(err)
	}
	var st StatsLine
	// the totals count the "train until no error" reinforcements too
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || st.Spam < 30 || st.Ham < 30 || st.Messages != 60 || st.Tokens == 0 {
		t.Errorf("stats %+v %v", st, err)
	}
	spamTotal := st.Spam
	// untrain the ham: the database keeps only the spam
	res, err = Train(ctx, TrainOptions{DB: db, Ham: []string{ham}, Untrain: true}, &out)
	if err != nil || res.Applied != 30 {
		t.Fatalf("untrain: %+v %v", res, err)
	}
	out.Reset()
	Stats(ctx, StatsOptions{DB: db, JSON: true}, &out)
	json.Unmarshal(out.Bytes(), &st)
	if st.Spam != spamTotal || st.Ham != 0 || st.Messages != 30 {
		t.Errorf("after untrain: %+v", st)
	}
	// per-user database
	if _, err := Train(ctx, TrainOptions{DB: DB{Path: db.Path, User: "bob@example.org"}, Spam: []string{nspam}}, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(db.Path), "users", "bob@example.org.db")); err != nil {
		t.Error(err)
	}
	if err := Prune(ctx, PruneOptions{DB: db}, &out); err != nil {
		t.Fatal(err)
	}
}

func TestTrainOnError(t *testing.T) {
	ctx := context.Background()
	spam, ham := mailboxes(t, 40, 3)
	db := DB{Path: filepath.Join(t.TempDir(), "g.db")}
	var out bytes.Buffer
	res, err := Train(ctx, TrainOptions{DB: db, Spam: []string{spam}, Ham: []string{ham}, OnError: true}, &out)
	if err != nil {
		t.Fatal(err)
	}
	// the classifier learns quickly: most messages are skipped, but not all
	if res.Applied == 0 || res.Skipped == 0 || res.Applied+res.Skipped != 80 {
		t.Errorf("train-on-error: %+v", res)
	}
}

func TestAUCAndROC(t *testing.T) {
	// hand-computed: pairs (spam, ham) ranked right: of 2×2 pairs, one tie and one wrong
	s := []Scored{{0.9, true}, {0.4, true}, {0.4, false}, {0.6, false}}
	// spam 0.9 beats both ham (2), spam 0.4 ties ham 0.4 (0.5) and loses to 0.6: 2.5/4
	if got := AUC(s); got != 0.625 {
		t.Errorf("AUC = %v, want 0.625", got)
	}
	var buf bytes.Buffer
	if err := WriteROCPNG(&buf, s); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil || img.Bounds().Dx() != 640 {
		t.Fatalf("png: %v", err)
	}
}

func TestEval(t *testing.T) {
	ctx := context.Background()
	trs, trh := mailboxes(t, 40, 4)
	tes, teh := mailboxes(t, 20, 5)
	var out bytes.Buffer
	roc := filepath.Join(t.TempDir(), "roc.png")
	r, err := Eval(ctx, EvalOptions{TrainSpam: trs, TrainHam: trh, TestSpam: tes, TestHam: teh, JSON: true, ROC: roc}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if r.FP != 0 || r.FN != 0 || r.AUC != 1 || r.TestSpam != 20 || r.TestHam != 20 {
		t.Errorf("eval: %+v", r)
	}
	var js map[string]any
	if err := json.Unmarshal(out.Bytes(), &js); err != nil || js["fp_rate"] != 0.0 {
		t.Errorf("json line %q: %v", out.String(), err)
	}
	if fi, err := os.Stat(roc); err != nil || fi.Size() == 0 {
		t.Errorf("roc: %v", err)
	}
	out.Reset()
	r, err = Eval(ctx, EvalOptions{Spam: trs, Ham: trh, Folds: 4}, &out)
	if err != nil || r.Mode != "kfold" || r.TestSpam != 40 || r.FP+r.FN != 0 {
		t.Errorf("k-fold: %+v %v\n%s", r, err, out.String())
	}
	// the errors are listed by file name, in both modes: ham tested as spam are
	// false negatives; the same messages given as both classes are not all right
	var errs bytes.Buffer
	if _, err := Eval(ctx, EvalOptions{TrainSpam: trs, TrainHam: trh, TestSpam: teh, TestHam: teh, Errors: &errs}, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(errs.String(), "FN "); n != 20 || !strings.Contains(errs.String(), teh) {
		t.Errorf("split errors: %d FN lines in %q", n, errs.String())
	}
	errs.Reset()
	if _, err := Eval(ctx, EvalOptions{Spam: trs, Ham: trs, Folds: 4, Errors: &errs}, &out); err != nil {
		t.Fatal(err)
	}
	if errs.Len() == 0 || !strings.Contains(errs.String(), trs) {
		t.Errorf("k-fold errors: %q", errs.String())
	}
	if _, err := Eval(ctx, EvalOptions{TrainSpam: trs}, &out); err == nil {
		t.Error("eval with incomplete sets succeeded")
	}
	_ = bayes.Spam
}

// writeMessages writes n synthetic messages as dir/NAME-i.eml and returns dir.
func writeMessages(t *testing.T, dir, name string, n, seed int, spam bool) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(seed), 7))
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("%s-%02d.eml", name, i))
		if err := os.WriteFile(p, []byte(synth(r, spam, seed*1000+i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symbolic links: %v", err)
	}
}

// TestSourcesFollowLinks: a folder of links to message files, a link to a folder, a
// maildir reached through a link and a tree with a link loop and a second link to one
// folder all list their messages, each once (they listed none: symbolic links were
// skipped without a word, and training on them trained nothing).
func TestSourcesFollowLinks(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	spamReal := writeMessages(t, filepath.Join(root, "real", "spam"), "s", 12, 1, true)
	hamReal := writeMessages(t, filepath.Join(root, "real", "ham"), "h", 12, 2, false)

	// a folder of links to the spam files (relative and absolute targets)
	links := filepath.Join(root, "links")
	os.Mkdir(links, 0o755)
	ents, _ := os.ReadDir(spamReal)
	for i, e := range ents {
		target := filepath.Join(spamReal, e.Name())
		if i%2 == 0 {
			target = filepath.Join("..", "real", "spam", e.Name())
		}
		symlink(t, target, filepath.Join(links, e.Name()))
	}
	// a link to the ham folder
	hamLink := filepath.Join(root, "ham-link")
	symlink(t, hamReal, hamLink)
	// a tree: a link to the spam folder, a second link to it, a loop to the tree
	tree := filepath.Join(root, "tree")
	os.Mkdir(tree, 0o755)
	symlink(t, spamReal, filepath.Join(tree, "a"))
	symlink(t, spamReal, filepath.Join(tree, "b"))
	symlink(t, tree, filepath.Join(tree, "loop"))
	// a maildir through a link
	md, _ := mailboxes(t, 6, 9)
	mdLink := filepath.Join(root, "maildir-link")
	symlink(t, md, mdLink)

	for path, want := range map[string]int{links: 12, hamLink: 12, tree: 12, mdLink: 6} {
		src, err := ListSource(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if src.Len() != want {
			t.Errorf("%s: %d messages, want %d", path, src.Len(), want)
		}
		n := 0
		if err := src.Each(ctx, func(m Message) error {
			if len(m.Raw) == 0 {
				t.Errorf("%s: empty message %s", path, m.Name)
			}
			n++
			return nil
		}); err != nil || n != want {
			t.Errorf("%s: read %d messages (%v), want %d", path, n, err, want)
		}
	}

	db := DB{Path: filepath.Join(t.TempDir(), "g.db")}
	var out bytes.Buffer
	res, err := Train(ctx, TrainOptions{DB: db, Spam: []string{links}, Ham: []string{hamLink}}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Spam != 12 || res.Ham != 12 || res.Applied != 24 {
		t.Errorf("train through links: %+v", res)
	}
	out.Reset()
	if err := Classify(ctx, ClassifyOptions{DB: db, Files: []string{tree}}, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 12 {
		t.Errorf("classify of the tree: %d lines, want 12:\n%s", n, out.String())
	}
	r, err := Eval(ctx, EvalOptions{TrainSpam: links, TrainHam: hamLink, TestSpam: tree, TestHam: hamLink}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if r.TrainSpam != 12 || r.TrainHam != 12 || r.TestSpam != 12 || r.TestHam != 12 {
		t.Errorf("eval through links: %+v", r)
	}
	r, err = Eval(ctx, EvalOptions{Spam: links, Ham: hamLink, Folds: 3}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if r.TestSpam != 12 || r.TestHam != 12 {
		t.Errorf("k-fold eval through links: %+v", r)
	}
}

// TestEmptySourceIsAnError: training, classifying or evaluating a folder without
// messages (empty, only hidden files, an empty maildir) fails naming the folder,
// before anything is trained; so does a link that leads nowhere.
func TestEmptySourceIsAnError(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	spam := writeMessages(t, filepath.Join(root, "spam"), "s", 12, 3, true)
	ham := writeMessages(t, filepath.Join(root, "ham"), "h", 12, 4, false)
	empty := filepath.Join(root, "empty")
	os.Mkdir(empty, 0o755)
	hidden := writeMessages(t, filepath.Join(root, "hidden"), ".h", 2, 5, false)
	maildir := filepath.Join(root, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(maildir, sub), 0o755)
	}
	os.WriteFile(filepath.Join(maildir, "tmp", "1.msg"), []byte(synth(rand.New(rand.NewPCG(1, 1)), true, 1)), 0o644)
	broken := filepath.Join(root, "broken")
	os.Mkdir(broken, 0o755)
	symlink(t, filepath.Join(root, "nowhere.eml"), filepath.Join(broken, "m.eml"))

	for _, bad := range []string{empty, hidden, maildir, broken} {
		dbPath := filepath.Join(t.TempDir(), "g.db")
		var out bytes.Buffer
		_, err := Train(ctx, TrainOptions{DB: DB{Path: dbPath}, Spam: []string{spam}, Ham: []string{ham, bad}}, &out)
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("train with %s: %v, want an error naming it", bad, err)
		}
		if _, err := os.Stat(dbPath); !os.IsNotExist(err) {
			t.Errorf("train with %s created the database (%v)", bad, err)
		}
		_, err = Eval(ctx, EvalOptions{TrainSpam: spam, TrainHam: ham, TestSpam: spam, TestHam: bad, JSON: true}, &out)
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("eval with %s: %v, want an error naming it", bad, err)
		}
		_, err = Eval(ctx, EvalOptions{Spam: bad, Ham: ham, Folds: 3}, &out)
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("k-fold eval with %s: %v, want an error naming it", bad, err)
		}
		if strings.Contains(out.String(), "one_minus_auc") {
			t.Errorf("eval with %s printed a result: %s", bad, out.String())
		}
	}
	db := DB{Path: filepath.Join(t.TempDir(), "g.db")}
	var out bytes.Buffer
	if _, err := Train(ctx, TrainOptions{DB: db, Spam: []string{spam}, Ham: []string{ham}}, &out); err != nil {
		t.Fatal(err)
	}
	if err := Classify(ctx, ClassifyOptions{DB: db, Files: []string{empty}}, &out); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("classify of an empty folder: %v", err)
	}
	if _, err := ListSource(maildir); err == nil || !strings.Contains(err.Error(), "maildir") {
		t.Errorf("empty maildir: %v", err)
	}
}
