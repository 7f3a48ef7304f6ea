package smtpd_test

// Config.MaxDataMemory as the real bound of message memory, large messages in temporary
// files while they arrive, and the queue's free space checked at MAIL.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

// openData dials the MX listener and runs the transaction up to DATA's 354.
func openData(t *testing.T, ts *testServer, extra string) *smtptest.Conn {
	t.Helper()
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>"+extra, 250)
	c.Expect(t, "RCPT TO:<bob@example.test>", 250)
	c.Expect(t, "DATA", 354)
	return c
}

// A message larger than 256KiB goes to a temporary file while it arrives: a slow sender
// holds disk, not memory. The queued message is the one sent.
func TestLargeMessageSpills(t *testing.T) {
	var files atomic.Int32
	ts := start(t, func(c *smtpd.Config, d *smtpd.Deps) {
		c.MaxMessageSize = 4 << 20
		d.TempFile = func() (*os.File, error) {
			files.Add(1)
			f, err := os.CreateTemp(t.TempDir(), "spill")
			if err == nil {
				os.Remove(f.Name())
			}
			return f, err
		}
	})
	msg := smtptest.Message("a@example.net", "bob@example.test", "big", 1<<20)
	c := openData(t, ts, "")
	half := len(msg) * 2 / 3
	c.Send(msg[:half])
	waitFor(t, "the message to go to a file", func() bool { return files.Load() == 1 })
	if m := ts.DataMemory(); m > 256<<10 {
		t.Errorf("a message in transfer holds %d bytes of memory", m)
	}
	c.Send(msg[half:] + ".\r\n")
	c.Expect(t, "", 250)
	got := ts.q.messages()
	if len(got) != 1 || !strings.HasSuffix(string(got[0].Data), msg) {
		t.Fatalf("queued %d messages, intact: %v", len(got), len(got) == 1 && strings.HasSuffix(string(got[0].Data), msg))
	}
	waitFor(t, "the memory to be given back once collected", func() bool {
		runtime.GC()
		return ts.DataMemory() == 0
	})

	// A small message never touches a file.
	c = openData(t, ts, "")
	c.Send(smtptest.Message("a@example.net", "bob@example.test", "small", 4<<10) + ".\r\n")
	c.Expect(t, "", 250)
	if files.Load() != 1 {
		t.Errorf("%d temporary files", files.Load())
	}
}

// holdEngine blocks the data stage of messages whose subject is "hold" until release is
// closed, and records the most message memory seen at the data stage.
type holdEngine struct {
	ts      func() *testServer
	release chan struct{}
	entered chan struct{}
	maxSeen atomic.Int64
	// in counts the data stages running now; maxIn is the most at once. dwell keeps each
	// data stage running a while, so that stages the budget would allow to overlap do.
	in, maxIn atomic.Int64
	dwell     time.Duration
}

// raise sets v to n when n is larger.
func raise(v *atomic.Int64, n int64) {
	for old := v.Load(); n > old && !v.CompareAndSwap(old, n); old = v.Load() {
	}
}

func (h *holdEngine) Evaluate(_ context.Context, s policy.Stage, tx *policy.Transaction) policy.Decision {
	if s != policy.StageData {
		return policy.Decision{}
	}
	raise(&h.maxSeen, h.ts().DataMemory())
	raise(&h.maxIn, h.in.Add(1))
	defer h.in.Add(-1)
	time.Sleep(h.dwell)
	if tx.Message.Header.Get("Subject") == "hold" {
		h.entered <- struct{}{}
		<-h.release
	}
	return policy.Decision{}
}

// The data stage of a message holds the whole message and what the policies make of
// it; a second large message waits for room, in order, instead of adding its copies, and
// gets 452 4.3.1 when policy_timeout passes first. Nothing is lost: each either gets
// 250 and is queued, or a 4xx.
func TestDataStageWaitsForMemory(t *testing.T) {
	var ts *testServer
	h := &holdEngine{ts: func() *testServer { return ts }, release: make(chan struct{}), entered: make(chan struct{}, 4)}
	ts = start(t, func(c *smtpd.Config, d *smtpd.Deps) {
		c.MaxMessageSize = 300 << 10
		c.MaxDataMemory = 1 // raised to what the data stage of one such message needs
		c.PolicyTimeout = 3 * time.Second
		d.Engine = h
	})
	a := openData(t, ts, "")
	a.Send(smtptest.Message("a@example.net", "bob@example.test", "hold", 290<<10) + ".\r\n")
	<-h.entered
	b := openData(t, ts, "")
	b.Send(smtptest.Message("a@example.net", "bob@example.test", "next", 290<<10) + ".\r\n")
	b.Timeout = 500 * time.Millisecond
	if r, err := b.ReadReply(); err == nil {
		t.Fatalf("second message judged while the first holds the memory: %v", r)
	}
	b.Timeout = 10 * time.Second
	close(h.release)
	a.Expect(t, "", 250)
	b.Expect(t, "", 250)
	if n := ts.q.count(); n != 2 {
		t.Errorf("queued %d", n)
	}
	budget := int64(3.3 * 300 << 10)
	if m := h.maxSeen.Load(); m > budget || m < 2*290<<10 {
		t.Errorf("data stage memory %d, want about 2.25 times the message, under %d", m, budget)
	}
}

func TestDataStageMemoryTimeout(t *testing.T) {
	var ts *testServer
	h := &holdEngine{ts: func() *testServer { return ts }, release: make(chan struct{}), entered: make(chan struct{}, 4)}
	ts = start(t, func(c *smtpd.Config, d *smtpd.Deps) {
		c.MaxMessageSize = 300 << 10
		c.MaxDataMemory = 1
		c.PolicyTimeout = 400 * time.Millisecond
		d.Engine = h
	})
	defer close(h.release)
	a := openData(t, ts, "")
	a.Send(smtptest.Message("a@example.net", "bob@example.test", "hold", 290<<10) + ".\r\n")
	<-h.entered
	b := openData(t, ts, "")
	b.Send(smtptest.Message("a@example.net", "bob@example.test", "next", 290<<10) + ".\r\n")
	if r := b.Expect(t, "", 452); r.Enhanced() != "4.3.1" {
		t.Errorf("no room in time: %v", r)
	}
	b.Expect(t, "NOOP", 250) // the session goes on
	// A small message that fits beside the held one goes through.
	c := openData(t, ts, "")
	c.Send(smtptest.Message("a@example.net", "bob@example.test", "small", 1<<10) + ".\r\n")
	c.Expect(t, "", 250)
}

// The copy PrepareMessage returns is counted while it is held; an unchanged message is
// not counted twice.
func TestPrepareMessageCopyCounted(t *testing.T) {
	for _, copying := range []bool{true, false} {
		var ts *testServer
		h := &holdEngine{ts: func() *testServer { return ts }, release: make(chan struct{}), entered: make(chan struct{}, 1)}
		ts = start(t, func(c *smtpd.Config, d *smtpd.Deps) {
			c.MaxMessageSize = 4 << 20
			d.Engine = h
			d.PrepareMessage = func(_ context.Context, _ *policy.Transaction, raw []byte) ([]byte, error) {
				if copying {
					return append([]byte("X-Prepared: yes\r\n"), raw...), nil
				}
				return raw, nil
			}
		})
		close(h.release)
		c := openData(t, ts, "")
		size := 1 << 20
		c.Send(smtptest.Message("a@example.net", "bob@example.test", "x", size) + ".\r\n")
		c.Expect(t, "", 250)
		m := h.maxSeen.Load()
		if copying && m < int64(3.2*float64(size)) || !copying && (m < int64(2.2*float64(size)) || m > int64(2.4*float64(size))) {
			t.Errorf("copying=%v: data stage memory %d for a message of %d", copying, m, size)
		}
	}
}

// A message that cannot go to its temporary file (disk full) gets 452 4.3.1 after its
// data, and the session goes on.
func TestTempFileFailure(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, d *smtpd.Deps) {
		c.MaxMessageSize = 4 << 20
		d.TempFile = func() (*os.File, error) { return nil, errors.New("no space left on device") }
	})
	c := openData(t, ts, "")
	c.Send(smtptest.Message("a@example.net", "bob@example.test", "big", 1<<20) + ".\r\n")
	if r := c.Expect(t, "", 452); r.Enhanced() != "4.3.1" {
		t.Errorf("%v", r)
	}
	c.Expect(t, "NOOP", 250)
	if ts.q.count() != 0 || ts.DataMemory() != 0 {
		t.Errorf("queued %d, memory %d", ts.q.count(), ts.DataMemory())
	}
}

// Many senders of large messages at once: memory stays under the budget and every
// message is queued intact.
func TestConcurrentLargeMessagesBounded(t *testing.T) {
	var ts *testServer
	h := &holdEngine{ts: func() *testServer { return ts }, release: make(chan struct{}), dwell: 50 * time.Millisecond}
	close(h.release)
	ts = start(t, func(c *smtpd.Config, d *smtpd.Deps) {
		c.MaxMessageSize = 3 << 19
		c.MaxDataMemory = 5 << 20
		c.PolicyTimeout = 30 * time.Second
		d.Engine = h
	})
	const n = 8
	msgs := make([]string, n)
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		msgs[i] = smtptest.Message("a@example.net", "bob@example.test", "m"+itoa(i), 1<<20)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtptest.Dial(ts.addr("mx"))
			if err != nil {
				return
			}
			defer c.Close()
			c.Timeout = 30 * time.Second
			for _, line := range []string{"", "EHLO client.example.net", "MAIL FROM:<a@example.net>", "RCPT TO:<bob@example.test>", "DATA"} {
				var r smtptest.Reply
				if line == "" {
					r, err = c.ReadReply()
				} else {
					r, err = c.Cmd(line)
				}
				if err != nil || r.Code >= 400 {
					return
				}
			}
			c.Send(msgs[i] + ".\r\n")
			if r, err := c.ReadReply(); err == nil {
				codes[i] = r.Code
			}
		}()
	}
	wg.Wait()
	queued := ts.q.messages()
	for i, code := range codes {
		if code != 250 {
			t.Errorf("message %d: %d", i, code)
		}
	}
	if len(queued) != n {
		t.Fatalf("queued %d of %d", len(queued), n)
	}
	for _, q := range queued {
		found := false
		for _, m := range msgs {
			if bytes.HasSuffix(q.Data, []byte(m)) {
				found = true
			}
		}
		if !found {
			t.Errorf("queued message %s is none of those sent", q.ID)
		}
	}
	// The budget (5 MiB) holds the data stages of two 1 MiB messages (2.25 MiB each), not
	// three: the eight senders are judged two at a time at most.
	if m := h.maxIn.Load(); m > 2 {
		t.Errorf("%d data stages at once; the 5 MiB budget holds 2", m)
	}
}

// The queue's free space is checked at MAIL (Postfix's queue_minfree): 452 4.3.1 before
// the client sends anything, also when the announced SIZE needs more than what is free.
func TestQueueSpaceCheckedAtMail(t *testing.T) {
	defer smtpd.SetFreeSpaceTTL(0)() // every MAIL reads the probe here
	var free, probes atomic.Int64
	var probeErr atomic.Bool
	ts := start(t, func(c *smtpd.Config, d *smtpd.Deps) {
		c.MaxMessageSize = 1 << 20
		c.QueueMinFree = 100 << 10
		d.FreeSpace = func() (int64, error) {
			probes.Add(1)
			if probeErr.Load() {
				return 0, errors.New("statfs failed")
			}
			return free.Load(), nil
		}
	})
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	free.Store(50 << 10)
	if r := c.Expect(t, "MAIL FROM:<a@example.net>", 452); r.Enhanced() != "4.3.1" || !strings.Contains(r.Text(), "Insufficient system storage") {
		t.Errorf("disk nearly full: %v", r)
	}
	c.Expect(t, "RCPT TO:<bob@example.test>", 502) // no transaction
	free.Store(1400000)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	c.Expect(t, "RSET", 250)
	c.Expect(t, "MAIL FROM:<a@example.net> SIZE=900000", 250)
	c.Expect(t, "RSET", 250)
	c.Expect(t, "MAIL FROM:<a@example.net> SIZE=1000000", 452) // 1.5 times SIZE is not free
	probeErr.Store(true)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250) // the queue write will tell

	// With the reading kept for a while, a burst of transactions costs one statfs.
	smtpd.SetFreeSpaceTTL(time.Hour)
	probeErr.Store(false)
	c.Expect(t, "RSET", 250)
	before := probes.Load()
	for range 3 {
		c.Expect(t, "MAIL FROM:<a@example.net>", 250)
		c.Expect(t, "RSET", 250)
	}
	if n := probes.Load() - before; n > 1 { // 0: the reading of the MAIL before still serves
		t.Errorf("three MAILs read the free space %d times, want at most 1", n)
	}
}
