package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const imapDateTime = "02-Jan-2006 15:04:05 -0700" // RFC 3501 date-time

func mustParse(t *testing.T, s string) time.Time {
	t.Helper()
	d, err := time.Parse(imapDateTime, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// internalDates returns the folder's internal dates as IMAP writes them.
func internalDates(t *testing.T, u *User, name string) []string {
	t.Helper()
	_, ms, err := u.Messages(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.InternalDate.Format(imapDateTime))
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestInternalDateZone: an internal date comes back in the zone it was given (RFC 3501
// §2.3.3), through Append, Prepare, SetInternalDate, Copy and Move, and after the index is
// reopened; the file's mtime is the instant; an index rebuilt from the maildir has no zone.
func TestInternalDateZone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newStore(t, Config{Dir: dir})
	u := open(t, s, "z@x.org")
	plus14 := mustParse(t, "03-Feb-2001 04:05:06 +1400")
	minus12 := mustParse(t, "02-Feb-2001 20:00:00 -1200")
	half := mustParse(t, "31-Dec-2023 23:59:59 +0530")
	for _, d := range []time.Time{plus14, minus12} {
		if _, err := u.Append(ctx, "INBOX", msg(d.String()), nil, d); err != nil {
			t.Fatal(err)
		}
	}
	p, err := u.Prepare(ctx, "INBOX", msg("prepared"), nil, half, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, errs := u.CommitPrepared(ctx, []*Prepared{p}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	want := []string{"03-Feb-2001 04:05:06 +1400", "02-Feb-2001 20:00:00 -1200", "31-Dec-2023 23:59:59 +0530"}
	if got := internalDates(t, u, "INBOX"); !equalStrings(got, want) {
		t.Fatalf("internal dates %q, want %q", got, want)
	}
	mb, ms, err := u.Messages(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		fi, err := os.Stat(filepath.Join(dir, "x.org", "z", "Maildir", m.File))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(m.InternalDate) {
			t.Fatalf("message %d: mtime %v, internal date %v", i, fi.ModTime(), m.InternalDate)
		}
	}
	// A migration repairing a date sets its zone too.
	if err := u.SetInternalDate(ctx, mb, ms[2].UID, mustParse(t, "01-Jan-2020 00:00:00 -0330")); err != nil {
		t.Fatal(err)
	}
	want[2] = "01-Jan-2020 00:00:00 -0330"
	// COPY and MOVE keep the date with its zone (RFC 3501 §6.4.7, RFC 6851).
	if _, err := u.Copy(ctx, mb, []uint32{ms[0].UID}, "Trash"); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Move(ctx, mb, []uint32{ms[1].UID}, "Trash"); err != nil {
		t.Fatal(err)
	}
	if got := internalDates(t, u, "Trash"); !equalStrings(got, want[:2]) {
		t.Fatalf("Trash: internal dates %q, want %q", got, want[:2])
	}
	u.Release()
	s.Close()

	// Reopened: the zones were on disk.
	s2 := newStore(t, Config{Dir: dir})
	u2 := open(t, s2, "z@x.org")
	if got := internalDates(t, u2, "INBOX"); !equalStrings(got, []string{want[0], want[2]}) {
		t.Fatalf("reopened INBOX: internal dates %q, want %q", got, []string{want[0], want[2]})
	}
	if got := internalDates(t, u2, "Trash"); !equalStrings(got, want[:2]) {
		t.Fatalf("reopened Trash: internal dates %q, want %q", got, want[:2])
	}
	u2.Release()
	s2.Close()

	// The index is lost: the maildir has the instants (mtimes), not the zones.
	for _, f := range []string{"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"} {
		os.Remove(filepath.Join(dir, "x.org", "z", f))
	}
	s3 := newStore(t, Config{Dir: dir})
	u3 := open(t, s3, "z@x.org")
	_, ms, err = u3.Messages(ctx, "Trash")
	if err != nil || len(ms) != 2 {
		t.Fatalf("rebuilt Trash: %d messages, %v", len(ms), err)
	}
	// A rebuild numbers files in key order: the copy (a new key) may come first.
	if ms[0].InternalDate.Equal(minus12) {
		ms[0], ms[1] = ms[1], ms[0]
	}
	for i, d := range []time.Time{plus14, minus12} {
		if !ms[i].InternalDate.Equal(d) || ms[i].InternalDate.Location() != time.Local {
			t.Fatalf("rebuilt message %d: %v, want the instant %v in the server's zone", i, ms[i].InternalDate, d)
		}
	}
}

// TestInternalZoneMigration: an index from before the zone column gains it on open; its
// old rows keep being shown in the server's zone, new ones have their own.
func TestInternalZoneMigration(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newStore(t, Config{Dir: dir})
	u := open(t, s, "m@x.org")
	old := mustParse(t, "03-Feb-2001 04:05:06 +1400")
	if _, err := u.Append(ctx, "INBOX", msg("old"), nil, old); err != nil {
		t.Fatal(err)
	}
	u.Release()
	s.Close()

	// Make it an index written before the column existed.
	db, err := sql.Open("sqlite", filepath.Join(dir, "x.org", "m", "index.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`ALTER TABLE message DROP COLUMN internal_zone; DELETE FROM meta WHERE k = 'internal_zone'`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for range 2 { // the second open finds the migration done
		s2 := newStore(t, Config{Dir: dir})
		u2 := open(t, s2, "m@x.org")
		if _, err := u2.Append(ctx, "INBOX", msg("new"), nil, mustParse(t, "02-Feb-2001 20:00:00 -1200")); err != nil {
			t.Fatal(err)
		}
		_, ms, err := u2.Messages(ctx, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if !ms[0].InternalDate.Equal(old) || ms[0].InternalDate.Location() != time.Local {
			t.Fatalf("old row: %v, want %v in the server's zone", ms[0].InternalDate, old)
		}
		for _, m := range ms[1:] {
			if got := m.InternalDate.Format(imapDateTime); got != "02-Feb-2001 20:00:00 -1200" {
				t.Fatalf("new row: %s", got)
			}
		}
		u2.Release()
		s2.Close()
	}
}
