package headers

import (
	"context"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/content"
	"github.com/portcullis-mail/portcullis/policy"
)

func TestParseDate(t *testing.T) {
	want := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, s := range []string{
		"Mon, 23 Nov 2026 10:00:00 +0000",
		"23 Nov 2026 11:00:00 +0100",
		"Mon, 23 Nov 2026 10:00:00 +0000 (UTC)",
		"Mon, 23 Nov 2026 05:00:00 EST",
		"Mon, 23 Nov 2026 03:00:00 -0700 (MST)",
		"Mon, 23 Nov 2026 03:00:00 -0700 MST",
		"Mon, 23 Nov 26 10:00:00 +0000",
		"Mon, 23 Nov 2026 10:00 +0000",
		"Mon,  23   Nov 2026 10:00:00 GMT",
		"Mon Nov 23 10:00:00 2026",
		"2026-11-23T10:00:00Z",
	} {
		got, err := ParseDate(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v", s, got, err)
		}
	}
	for _, s := range []string{"", "yesterday", "Mon, 32 Nov 2026 10:00:00 +0000", "99/99/99"} {
		if _, err := ParseDate(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestDatePolicy(t *testing.T) {
	p, err := NewDate(DateConfig{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	rcvd := "Received: from a.example (a.example [192.0.2.1]) by mx.example; Mon, 23 Nov 2026 11:59:00 +0000\r\n"
	cases := []struct {
		hdr    string
		reason string
		skew   time.Duration
		rskew  time.Duration
	}{
		{rcvd + "Date: Mon, 23 Nov 2026 11:58:00 +0000\r\n", "headers.date_ok", -2 * time.Minute, -time.Minute},
		{rcvd, "headers.date_missing", 0, 0},
		{rcvd + "Date: soon\r\n", "headers.date_invalid", 0, 0},
		{rcvd + "Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n", "headers.date_future", 72 * time.Hour, 72*time.Hour + time.Minute},
		{rcvd + "Date: Mon, 02 Nov 2026 12:00:00 +0000\r\n", "headers.date_past", -21 * 24 * time.Hour, -21*24*time.Hour + time.Minute},
		{"Received: x; Fri, 20 Nov 2026 12:00:00 +0000\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n", "headers.date_received_skew", 0, 72 * time.Hour},
	}
	decl := p.DeclareFacts()
	for _, c := range cases {
		tx := policy.NewTransaction(policy.Conn{})
		tx.Message = policy.NewMessage([]byte(c.hdr+"Subject: x\r\n\r\nbody\r\n"), at)
		r := p.CheckData(context.Background(), tx)
		if r.Reason != c.reason || r.Facts["date_skew"] != c.skew || r.Facts["received_skew"] != c.rskew {
			t.Errorf("%q: got %s skew %v rskew %v, want %s %v %v", c.hdr, r.Reason, r.Facts["date_skew"], r.Facts["received_skew"], c.reason, c.skew, c.rskew)
		}
		if (r.Status == policy.StatusPass) != (c.reason == "headers.date_ok") {
			t.Errorf("%s: status %s", c.reason, r.Status)
		}
		for k, v := range r.Facts {
			if d, ok := decl[k]; !ok || typeOfDate(d) != typeOfDate(v) {
				t.Errorf("fact %s (%T) not declared as such", k, v)
			}
		}
	}
}

func typeOfDate(v any) string {
	switch v.(type) {
	case time.Duration:
		return "duration"
	case bool:
		return "bool"
	case string:
		return "string"
	}
	return "other"
}

func TestDatesMultiple(t *testing.T) {
	h, _ := content.ReadHeader([]byte("Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n"), 0)
	f := Dates(h, time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	if !f.Multiple || f.Skew != 0 || !f.ReceivedMissing {
		t.Fatalf("%+v", f)
	}
}
