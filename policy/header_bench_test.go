package policy

import (
	"strings"
	"testing"
)

// benchHeader is the header of a message as an MX receives it: trace fields, a folded
// DKIM signature, authentication results and the usual originator fields.
const benchHeader = "Received: from mail-yw1-f170.google.example (mail-yw1-f170.google.example [209.85.128.170])\r\n" +
	"\tby mx.example.org (portcullis) with ESMTPS id 4f1c2d3e\r\n" +
	"\tfor <alice@example.org>; Mon, 05 Jan 2026 10:00:02 +0000\r\n" +
	"Received: by mail-yw1-f170.google.example with SMTP id 00721157ae682-6f2b8a9c1d0so1234567b3.2\r\n" +
	"        for <alice@example.org>; Mon, 05 Jan 2026 02:00:01 -0800 (PST)\r\n" +
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n" +
	"        d=example.net; s=20230601; t=1767607201; x=1768212001; darn=example.org;\r\n" +
	"        h=to:subject:message-id:date:from:mime-version:from:to:cc:subject\r\n" +
	"         :date:message-id:reply-to;\r\n" +
	"        bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n" +
	"        b=" + "dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaXMgYXMgbG9uZyBhcyBvbmUgaXM=\r\n" +
	"         " + "dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaXMgYXMgbG9uZyBhcyBvbmUgaXM=\r\n" +
	"         " + "dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaXMgYXMgbG9uZyBhcyBvbmUgaXM=\r\n" +
	"X-Google-DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n" +
	"        d=1e100.example; s=20230601; t=1767607201; x=1768212001;\r\n" +
	"        bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n" +
	"        b=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaXMgYXMgbG9uZyBhcyBvbmUgaXM=\r\n" +
	"X-Gm-Message-State: AOJu0YzU3b5Vx1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8t9u0v1w2\r\n" +
	"X-Google-Smtp-Source: AGHT+IFa1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6==\r\n" +
	"X-Received: by 2002:a05:690c:6f89:b0:6f2:8c1d:2e3f with SMTP id 00721157ae682-6f3a1b2c3d4mr12345677b3.9;\r\n" +
	"        Mon, 05 Jan 2026 02:00:01 -0800 (PST)\r\n" +
	"MIME-Version: 1.0\r\n" +
	"From: Bob Example <bob@example.net>\r\n" +
	"Date: Mon, 5 Jan 2026 11:00:00 +0100\r\n" +
	"Message-ID: <CAB1c2D3e4F5g6H7i8J9k0L1m2N3o4P5q6R7s8T9u0V1w2X3y4Z5@mail.example.net>\r\n" +
	"Subject: Lunch on Thursday?\r\n" +
	"To: Alice Example <alice@example.org>\r\n" +
	"Content-Type: multipart/alternative; boundary=\"000000000000a1b2c3d4e5f6a7b8\"\r\n" +
	"\r\n"

// BenchmarkParseHeader measures the lenient header parse every message gets on the SMTP
// data path (NewMessage).
func BenchmarkParseHeader(b *testing.B) {
	raw := []byte(benchHeader + strings.Repeat("a line of body text, about sixty characters long, repeated\r\n", 50))
	b.SetBytes(int64(len(benchHeader)))
	b.ReportAllocs()
	for b.Loop() {
		h, end, bad := ParseHeader(raw)
		if bad || end != len(benchHeader) || h.Get("Subject") == "" {
			b.Fatal("bad parse")
		}
	}
}
