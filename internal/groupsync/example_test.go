package groupsync_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/portcullis-mail/portcullis/internal/groupsync"
)

// Ten writers create files in one directory and each needs its new name durable before
// it answers: they share the directory fsyncs.
func Example() {
	dir, err := os.MkdirTemp("", "groupsync")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	d, err := os.Open(dir)
	if err != nil {
		panic(err)
	}
	defer d.Close()
	s := groupsync.New(d.Sync)
	defer s.Close() // before d.Close: waits for the callers being served

	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			name := filepath.Join(dir, fmt.Sprintf("msg%d", i))
			if err := os.WriteFile(name, []byte("hello\n"), 0o600); err != nil {
				panic(err) // a real writer also fsyncs the file before its name
			}
			if err := s.Sync(); err != nil {
				panic(err)
			}
			// The file's name is on stable storage: tell the client.
		})
	}
	wg.Wait()
	entries, _ := os.ReadDir(dir)
	fmt.Println(len(entries), "files, each name durable before its writer went on")
	// Output: 10 files, each name durable before its writer went on
}
