package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/spool"
)

// LMTPConfig configures an LMTP transport (RFC 2033), e.g. to Dovecot or Cyrus.
type LMTPConfig struct {
	// Network is "tcp" or "unix"; Addr is HOST:PORT or a socket path.
	Network string `yaml:"network"`
	Addr    string `yaml:"addr"`
	// LocalName is sent in LHLO. [localhost]
	LocalName string `yaml:"local_name"`
	// DialTimeout bounds connecting, CommandTimeout each command, DataTimeout the message
	// transfer and the per-recipient replies. [30s, 5m, 10m]
	DialTimeout    time.Duration `yaml:"dial_timeout"`
	CommandTimeout time.Duration `yaml:"command_timeout"`
	DataTimeout    time.Duration `yaml:"data_timeout"`
	// MaxIdle connections are kept for reuse. [4]
	MaxIdle int `yaml:"max_idle"`
}

// LMTP is a Transport that delivers over LMTP with one status per recipient, reusing
// connections (RSET between transactions).
type LMTP struct {
	cfg  LMTPConfig
	mu   sync.Mutex
	idle []*smtp.Client
}

// NewLMTP returns an LMTP transport. It does not connect until the first delivery.
func NewLMTP(cfg LMTPConfig) (*LMTP, error) {
	if cfg.Network != "tcp" && cfg.Network != "unix" {
		return nil, fmt.Errorf("delivery: lmtp: network %q must be tcp or unix", cfg.Network)
	}
	if cfg.Addr == "" {
		return nil, errors.New("delivery: lmtp: no address")
	}
	if cfg.LocalName == "" {
		cfg.LocalName = "localhost"
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 30 * time.Second
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 5 * time.Minute
	}
	if cfg.DataTimeout <= 0 {
		cfg.DataTimeout = 10 * time.Minute
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = 4
	}
	return &LMTP{cfg: cfg}, nil
}

// Close closes the idle connections.
func (l *LMTP) Close() error {
	l.mu.Lock()
	idle := l.idle
	l.idle = nil
	l.mu.Unlock()
	for _, c := range idle {
		c.Quit()
	}
	return nil
}

func (l *LMTP) get(ctx context.Context) (*smtp.Client, error) {
	for {
		l.mu.Lock()
		var c *smtp.Client
		if n := len(l.idle); n > 0 {
			c, l.idle = l.idle[n-1], l.idle[:n-1]
		}
		l.mu.Unlock()
		if c == nil {
			break
		}
		if c.Reset() == nil { // still alive
			return c, nil
		}
		c.Close()
	}
	d := net.Dialer{Timeout: l.cfg.DialTimeout}
	conn, err := d.DialContext(ctx, l.cfg.Network, l.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("delivery: lmtp: connect %s: %w", l.cfg.Addr, err)
	}
	c := smtp.NewClientLMTP(conn)
	c.CommandTimeout, c.SubmissionTimeout = l.cfg.CommandTimeout, l.cfg.DataTimeout
	if err := c.Hello(l.cfg.LocalName); err != nil {
		c.Close()
		return nil, fmt.Errorf("delivery: lmtp: LHLO to %s: %w", l.cfg.Addr, err)
	}
	return c, nil
}

func (l *LMTP) put(c *smtp.Client) {
	l.mu.Lock()
	if len(l.idle) < l.cfg.MaxIdle {
		l.idle = append(l.idle, c)
		c = nil
	}
	l.mu.Unlock()
	if c != nil {
		c.Quit()
	}
}

// Deliver runs one LMTP transaction for rcpts and maps each recipient's reply: 2xx
// delivered, 5xx permanent, anything else (4xx, network errors) deferred.
func (l *LMTP) Deliver(ctx context.Context, env spool.Envelope, rcpts []string, msg io.Reader) []Result {
	out := make([]Result, len(rcpts))
	for i, r := range rcpts {
		out[i].Rcpt = r
	}
	setAll := func(err error) []Result {
		for i := range out {
			if out[i].Err == nil && out[i].Reply == "" {
				out[i].Err, out[i].Reply = err, smtpReply(err)
			}
		}
		return out
	}
	c, err := l.get(ctx)
	if err != nil {
		return setAll(err)
	}
	// Cancelling ctx aborts the transaction by closing the connection.
	healthy := true
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer func() {
		if stop() && healthy {
			l.put(c)
		} else {
			c.Close()
		}
	}()
	fail := func(err error) []Result {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			healthy = false // a broken connection is not reused
		}
		return setAll(classify(err))
	}

	if err := c.Mail(env.From, nil); err != nil {
		return fail(err)
	}
	var accepted []int
	seen := map[string]int{}
	for i, r := range rcpts {
		if j, dup := seen[r]; dup { // the same address twice gets the first one's result
			defer func() { out[i].Err, out[i].Reply = out[j].Err, out[j].Reply }()
			continue
		}
		seen[r] = i
		if err := c.Rcpt(r, nil); err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				return fail(err)
			}
			out[i].Err, out[i].Reply = classify(err), smtpReply(err)
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		if err := c.Reset(); err != nil {
			healthy = false
		}
		return out
	}
	w, err := c.Data()
	if err != nil {
		return fail(err)
	}
	if _, err := io.Copy(w, msg); err != nil {
		healthy = false
		return setAll(fmt.Errorf("delivery: lmtp: sending message: %w", err))
	}
	resp, err := w.CloseWithLMTPResponse()
	var perRcpt smtp.LMTPDataError
	if err != nil && !errors.As(err, &perRcpt) {
		return fail(err)
	}
	for _, i := range accepted {
		r := rcpts[i]
		if se, ok := perRcpt[r]; ok {
			out[i].Err, out[i].Reply = classify(se), smtpReply(se)
		} else if dr, ok := resp[r]; ok {
			out[i].Reply = "250 " + oneLine(dr.StatusText)
		} else {
			out[i].Err = errors.New("delivery: lmtp: no reply for recipient")
		}
	}
	return out
}

// classify turns an SMTP reply error into a PermanentError (5xx) or leaves it temporary.
func classify(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 && se.Code < 600 {
		return Permanent(smtpReply(err), err)
	}
	return err
}

// smtpReply renders an error as the reply to record: "550 5.1.1 text".
func smtpReply(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		s := fmt.Sprint(se.Code)
		if e := se.EnhancedCode; e != smtp.NoEnhancedCode && e != (smtp.EnhancedCode{}) {
			s += fmt.Sprintf(" %d.%d.%d", e[0], e[1], e[2])
		}
		return s + " " + oneLine(strings.TrimSpace(se.Message))
	}
	var p *PermanentError
	if errors.As(err, &p) {
		return p.Reply
	}
	if err == nil {
		return ""
	}
	return "451 4.4.1 " + oneLine(err.Error())
}
