package policy

import (
	"testing"
)

// FuzzRules feeds arbitrary rule files to the parser and compiler: any input must give
// rules or errors, never a panic.
func FuzzRules(f *testing.F) {
	f.Add([]byte("rules:\n  - name: a\n    if: zen.listed\n    reject: true\n"))
	f.Add([]byte("rules:\n  - {name: b, stage: data, if: 'msg.size > 10 && header(\"X\") == \"y\"', tag: [x], add_header: 'X-A: {{client.ip}}'}\n"))
	f.Add([]byte("rules: [1, 2, {name: c}]"))
	f.Add([]byte("- name: d\n  if: |\n    any(msg.attachments, .ext in [\"exe\"])\n  quarantine: true\n"))
	pols := testPolicies()
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := ParseRules(data, "fuzz.yaml")
		if err != nil {
			return
		}
		_ = Compile(specs, pols, nil)
	})
}

// FuzzParseReply: reply strings from rule files.
func FuzzParseReply(f *testing.F) {
	f.Add(`554 5.7.1 "listed"`)
	f.Add(`451 4.7.1`)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReply(s)
		if err == nil && (r.Code < 200 || r.Code > 599) {
			t.Fatalf("accepted code %d", r.Code)
		}
	})
}

// FuzzParseHeader: any bytes give a header and an offset inside the message.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte("From: a@example.net\r\nSubject: x\r\n\r\nbody"))
	f.Add([]byte("junk\r\n\tcont\r\nA: b\n\nbody"))
	f.Add([]byte(":\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, end, _ := ParseHeader(raw)
		if end < 0 || end > len(raw) {
			t.Fatalf("end %d outside 0..%d", end, len(raw))
		}
	})
}
