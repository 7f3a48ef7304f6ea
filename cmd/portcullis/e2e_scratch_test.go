package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/virus/clamdtest"
)

func TestE2EScratchHung(t *testing.T) {
	clamd := clamdtest.StartClamd(t, clamdtest.Options{})
	dir := t.TempDir()
	dns := dnstest.New(t, dnstest.Zone{})
	rules := strings.Replace(fmt.Sprintf(e2eVirusRules, clamd.TCPAddr()), "reply_timeout: 10s", "reply_timeout: 2s", 1)
	cfg := e2eConfig(t, dir, dns, rules, "")
	srv := startServer(t, cfg, "mx")
	defer srv.kill()
	_, err := e2eSendTimed(srv.addrs["mx"], "warm", false)
	require.NoError(t, err, srv.logText())
	b, err := os.ReadFile(filepath.Join(clamd.Dir(), "clamd.pid"))
	require.NoError(t, err)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	for i := range 4 {
		s := time.Now()
		_, err = e2eSendTimed(srv.addrs["mx"], fmt.Sprint("hung", i), i%2 == 1)
		t.Logf("hung %d: %v after %v", i, err, time.Since(s))
	}
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	time.Sleep(1500 * time.Millisecond)
	for i := range 3 {
		s := time.Now()
		_, err = e2eSendTimed(srv.addrs["mx"], fmt.Sprint("cont", i), i%2 == 1)
		t.Logf("cont %d: %v after %v", i, err, time.Since(s))
	}
}
