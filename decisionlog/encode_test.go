package decisionlog

import (
	"encoding/json"
	"math"
	"testing"
)

// The writer's hand-made JSON must be encoding/json's, byte for byte: the records written
// before it and after it are read alike, and query.go decodes it with encoding/json.
// A score that is not finite, which encoding/json refuses, is written as 0.
func FuzzPolicyJSON(f *testing.F) {
	for _, s := range []struct {
		name, stage, status, reason, tag string
		score                            float64
	}{
		{"spf", "mail", "pass", "", "", 0},
		{"zen", "connect", "listed", "127.0.0.2 <spam> & \"co\"\n\t\\", "bulk", 2.5},
		{"x\u2028y\u2029", "", "", "\xff\xfe bad utf-8 \x00\x1f\x7f", "é", 1e-7},
		{"big", "data", "fail", "ümlaut 日本", "<tag>", -3e21},
		{"small", "rcpt", "none", "", "", 123456789.125},
	} {
		f.Add(s.name, s.stage, s.status, s.reason, s.tag, s.score)
	}
	f.Fuzz(func(t *testing.T, name, stage, status, reason, tag string, score float64) {
		ps := []PolicyResult{{Name: name, Stage: stage, Status: status, Reason: reason, Score: score}, {Name: reason, Status: name}}
		want, err := json.Marshal(ps)
		if math.IsNaN(score) || math.IsInf(score, 0) {
			if err == nil {
				t.Fatalf("encoding/json marshaled %v", score)
			}
			ps[0].Score = 0
			if want, err = json.Marshal(ps); err != nil {
				t.Fatal(err)
			}
			ps[0].Score = score
		} else if err != nil {
			t.Fatal(err)
		}
		if got := appendPolicies(nil, ps); string(got) != string(want) {
			t.Fatalf("policies:\n got %s\nwant %s", got, want)
		}
		tags := []string{tag, name, reason}
		want, err = json.Marshal(tags)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendStrings(nil, tags); string(got) != string(want) {
			t.Fatalf("tags:\n got %s\nwant %s", got, want)
		}
	})
}
