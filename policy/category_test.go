package policy_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis-mail/portcullis/policy"
)

func TestDecisionCategory(t *testing.T) {
	specs, err := policy.ParseRules([]byte(`
- name: zen
  category: RBL
  stage: connect
  if: client.ip == "192.0.2.1"
  reject: true
- name: helo_bad
  stage: helo
  if: helo.name == "bad"
  reject: true
`), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e, err := policy.NewEngine(policy.EngineConfig{Rules: specs, Metrics: policy.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("192.0.2.1"), HELO: "bad"})
	if d := e.Evaluate(context.Background(), policy.StageConnect, tx); d.Rule != "zen" || d.Category != "RBL" {
		t.Fatalf("connect decision %+v", d)
	}
	if d := e.Evaluate(context.Background(), policy.StageHelo, tx); d.Rule != "helo_bad" || d.Category != "helo_bad" {
		t.Fatalf("helo decision: category should default to the rule's name: %+v", d)
	}
	want := `
# HELP portcullis_decisions_total Stage decisions by stage, verdict and the deciding rule's category ("" when no rule decided).
# TYPE portcullis_decisions_total counter
portcullis_decisions_total{category="RBL",stage="connect",verdict="reject"} 1
portcullis_decisions_total{category="helo_bad",stage="helo",verdict="reject"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "portcullis_decisions_total"); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.ParseRules([]byte("- name: x\n  category: \"\"\n  if: true\n  reject: true\n"), "r.yaml"); err == nil || !strings.Contains(err.Error(), "category") {
		t.Fatalf("empty category: %v", err)
	}
}
