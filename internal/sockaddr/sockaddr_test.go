package sockaddr_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/sockaddr"
)

func TestListenUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := sockaddr.Listen("unix:"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}
	// A live server's socket is not taken over.
	if _, err := sockaddr.Listen("unix:"+path, nil); err == nil {
		t.Fatal("listened over a running server's socket")
	}
	// A dead server's socket is replaced (net.UnixListener removes its file on Close, so
	// leave one behind as a crash does).
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = sockaddr.Listen("unix:"+path, nil)
	if err != nil {
		t.Fatalf("a stale socket was not replaced: %v", err)
	}
	ln.Close()
	// A regular file in the way is not ours to remove.
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := sockaddr.Listen("unix:"+file, nil); err == nil {
		t.Fatal("listened over a regular file")
	}
	if _, err := sockaddr.Listen("unix:relative", nil); err == nil {
		t.Fatal("relative socket path accepted")
	}
}

func ExampleSplit() {
	fmt.Println(sockaddr.Split("unix:/run/portcullis/policyd"))
	fmt.Println(sockaddr.Split("inet:127.0.0.1:10040"))
	fmt.Println(sockaddr.Split("[::1]:10040"))
	// Output:
	// unix /run/portcullis/policyd
	// tcp 127.0.0.1:10040
	// tcp [::1]:10040
}
