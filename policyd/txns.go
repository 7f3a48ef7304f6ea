package policyd

import (
	"container/list"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/policy"
)

// txn is one mail transaction as Postfix's requests describe it (one instance
// attribute): the stages already run and what they decided, so that a message with
// many recipients runs the connect, helo and mail stages once, as smtpd does.
type txn struct {
	mu        sync.Mutex
	tx        *policy.Transaction
	done      [policy.StageRcpt]bool
	terminal  *policy.Decision // a refusal at connect, helo or mail: every later request gets it
	decs      []policy.Decision
	prepended map[string]bool
	// saidDiscard and saidHold: the action was given once already.
	saidDiscard, saidHold bool

	key  string
	seen time.Time
	elem *list.Element
}

func newTxn() *txn { return &txn{tx: policy.NewTransaction(policy.Conn{})} }

// transactions remembers txns by instance, the least recently used forgotten first.
type transactions struct {
	mu  sync.Mutex
	max int
	ttl time.Duration
	m   map[string]*txn
	lru *list.List // front: most recent
	now func() time.Time
}

func newTransactions(max int, ttl time.Duration) *transactions {
	return &transactions{max: max, ttl: ttl, m: map[string]*txn{}, lru: list.New(), now: time.Now}
}

// get returns the transaction of key, a new one when it is unknown or expired.
func (ts *transactions) get(key string) *txn {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := ts.now()
	// Expire from the back: the oldest first.
	for e := ts.lru.Back(); e != nil; e = ts.lru.Back() {
		t := e.Value.(*txn)
		if now.Sub(t.seen) < ts.ttl && (ts.lru.Len() < ts.max || ts.m[key] != nil) {
			break
		}
		ts.lru.Remove(e)
		delete(ts.m, t.key)
	}
	if t, ok := ts.m[key]; ok {
		t.seen = now
		ts.lru.MoveToFront(t.elem)
		return t
	}
	t := newTxn()
	t.key, t.seen = key, now
	t.elem = ts.lru.PushFront(t)
	ts.m[key] = t
	return t
}

// forget drops key (the transaction ended).
func (ts *transactions) forget(key string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t, ok := ts.m[key]; ok {
		ts.lru.Remove(t.elem)
		delete(ts.m, key)
	}
}
