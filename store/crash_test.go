package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCrashDuringDelivery kills a delivering process (SIGKILL) and checks that every
// delivery it reported as done is in the store with its content, and that the index and
// the maildir agree after reopening.
func TestCrashDuringDelivery(t *testing.T) {
	if dir := os.Getenv("PORTCULLIS_CRASH_CHILD"); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDuringDelivery$")
	cmd.Env = append(os.Environ(), "PORTCULLIS_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[uint32]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "delivered" {
			continue
		}
		uid, _ := strconv.Atoi(f[1])
		acked[uint32(uid)] = f[2]
		if len(acked) == 40 {
			cmd.Process.Kill()
			break
		}
	}
	cmd.Wait()
	if len(acked) < 40 {
		t.Fatalf("child delivered only %d messages", len(acked))
	}
	s := newStore(t, Config{Dir: dir})
	u := open(t, s, "crash@example.org")
	_, msgs, err := u.Messages(context.Background(), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := u.Mailbox(context.Background(), "INBOX")
	byUID := map[uint32]Message{}
	for _, m := range msgs {
		byUID[m.UID] = m
		f, err := u.Open(mb, m)
		if err != nil {
			t.Fatalf("indexed message %d has no file: %v", m.UID, err)
		}
		f.Close()
	}
	for uid, token := range acked {
		m, ok := byUID[uid]
		if !ok {
			t.Fatalf("acknowledged delivery uid %d lost", uid)
		}
		f, _ := u.Open(mb, m)
		b := make([]byte, 200)
		n, _ := f.Read(b)
		f.Close()
		if !strings.Contains(string(b[:n]), token) {
			t.Fatalf("uid %d holds %q, want token %s", uid, b[:n], token)
		}
	}
	es, _ := u.folder("INBOX").Scan()
	if len(es) != len(msgs) {
		t.Fatalf("%d files but %d indexed", len(es), len(msgs))
	}
	t.Logf("%d acknowledged, %d in store after SIGKILL", len(acked), len(msgs))
}

func crashChild(dir string) {
	s, err := New(Config{Dir: dir})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		token := fmt.Sprintf("token-%d-%d", i, time.Now().UnixNano())
		uid, err := s.Deliver(context.Background(), "crash@example.org", "", strings.NewReader("Subject: "+token+"\r\n\r\n"+token+"\r\n"), nil)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("delivered %d %s\n", uid, token)
	}
}
