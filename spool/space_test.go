package spool

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestCreateTempAndFreeSpace(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := s.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("hello"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF || string(b) != "hello" {
		t.Fatalf("read back %q: %v", b, err)
	}
	// Unlinked at once: nothing in tmp/ to clean up.
	if des, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(des) != 0 {
		t.Errorf("tmp/ holds %d files", len(des))
	}
	free, err := s.FreeSpace()
	if err != nil || free <= 0 {
		t.Errorf("FreeSpace: %d, %v", free, err)
	}
}
