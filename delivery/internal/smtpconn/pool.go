package smtpconn

import (
	"sync"
	"time"
)

// Pool keeps idle sessions per destination for reuse (Postfix's connection cache). The
// zero value is not usable; set the limits with NewPool.
type Pool struct {
	off     bool
	maxIdle int
	idleFor time.Duration
	maxUses int
	maxAge  time.Duration

	mu     sync.Mutex
	idle   map[string][]*Session
	timer  *time.Timer
	closed bool
}

// PoolConfig sets the pool's limits. Zero values take the defaults in brackets.
type PoolConfig struct {
	Disabled    bool          // no reuse: Get returns nil, Put closes the session
	MaxIdle     int           // idle sessions kept per destination [4]
	IdleTimeout time.Duration // an idle session is closed after this long [30s]
	MaxUses     int           // transactions per session before it is closed [100]
	MaxAge      time.Duration // a session is not reused after this long [5m, as Postfix's smtp_connection_reuse_time_limit]
}

// NewPool returns an empty pool.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = 4
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.MaxUses <= 0 {
		cfg.MaxUses = 100
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 5 * time.Minute
	}
	return &Pool{off: cfg.Disabled, maxIdle: cfg.MaxIdle, idleFor: cfg.IdleTimeout, maxUses: cfg.MaxUses, maxAge: cfg.MaxAge, idle: map[string][]*Session{}}
}

// Get returns an idle session for key that still looks alive, or nil.
func (p *Pool) Get(key string) *Session {
	if p.off {
		return nil
	}
	for {
		p.mu.Lock()
		l := p.idle[key]
		if len(l) == 0 {
			p.mu.Unlock()
			return nil
		}
		s := l[len(l)-1] // the most recently used: the least likely to have timed out
		l[len(l)-1] = nil
		if len(l) == 1 {
			delete(p.idle, key)
		} else {
			p.idle[key] = l[:len(l)-1]
		}
		p.mu.Unlock()
		if p.expired(s, time.Now()) || !alive(s) {
			go s.Close()
			continue
		}
		return s
	}
}

// Put returns s to the pool after use, or closes it when it is broken, worn out, or the
// pool for its key is full.
func (p *Pool) Put(s *Session) {
	if s == nil {
		return
	}
	if p.off {
		s.Close()
		return
	}
	p.mu.Lock()
	if s.broken || p.closed || s.uses >= p.maxUses || time.Since(s.created) >= p.maxAge || len(p.idle[s.Key]) >= p.maxIdle {
		p.mu.Unlock()
		go s.Close()
		return
	}
	s.used = time.Now()
	p.idle[s.Key] = append(p.idle[s.Key], s)
	if p.timer == nil {
		p.timer = time.AfterFunc(p.idleFor, p.sweep)
	}
	p.mu.Unlock()
}

// Idle returns the number of idle sessions for key.
func (p *Pool) Idle(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle[key])
}

// Close closes every idle session; sessions Put later are closed at once.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	all := p.idle
	p.idle = map[string][]*Session{}
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range all {
		for _, s := range l {
			wg.Go(func() { s.Close() })
		}
	}
	wg.Wait()
}

func (p *Pool) expired(s *Session, now time.Time) bool {
	return now.Sub(s.used) >= p.idleFor || now.Sub(s.created) >= p.maxAge || s.uses >= p.maxUses
}

// sweep closes the sessions that have been idle too long.
func (p *Pool) sweep() {
	now := time.Now()
	var drop []*Session
	p.mu.Lock()
	for k, l := range p.idle {
		keep := l[:0]
		for _, s := range l {
			if p.expired(s, now) {
				drop = append(drop, s)
			} else {
				keep = append(keep, s)
			}
		}
		if len(keep) == 0 {
			delete(p.idle, k)
		} else {
			p.idle[k] = keep
		}
	}
	p.timer = nil
	if len(p.idle) > 0 && !p.closed {
		p.timer = time.AfterFunc(p.idleFor/2+time.Millisecond, p.sweep)
	}
	p.mu.Unlock()
	for _, s := range drop {
		s.Close()
	}
}
