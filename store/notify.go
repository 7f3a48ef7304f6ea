package store

import "sync"

// EventKind says what changed in a mailbox.
type EventKind int

// Event kinds.
const (
	Appended       EventKind = iota + 1 // new messages (UIDs ascending, above every earlier UID)
	Expunged                            // messages removed
	FlagsChanged                        // flags of Messages changed
	MailboxDeleted                      // the mailbox was deleted or renamed away
)

// Event is one committed change to a mailbox, delivered to its watchers in commit order.
type Event struct {
	Kind     EventKind
	UIDs     []uint32  // Appended, Expunged
	Messages []Message // FlagsChanged (UID, Flags, ModSeq)
	// Source is the token passed by the caller that made the change (an IMAP session), so
	// it can skip echoes of its own STORE.
	Source any
}

// MaxPendingEvents bounds the events queued for one watcher; beyond it the watcher is
// marked overflowed and its owner must resynchronize (an IMAP session says BYE).
const MaxPendingEvents = 100000

type watchKey struct {
	user    string
	mailbox int64
}

// hub routes events to watchers. Publishing takes only a read lock on the routing table
// and the lock of the one mailbox's watcher set, so deliveries to different users never
// contend (a single global mutex measurably collapsed throughput with 200 sessions).
type hub struct {
	mu       sync.RWMutex
	watchers map[watchKey]*watchSet
}

type watchSet struct {
	mu sync.Mutex
	ws map[*Watcher]struct{}
}

// Watcher receives a mailbox's events. C is signalled (without blocking) when events are
// pending; Take returns them.
type Watcher struct {
	h   *hub
	key watchKey
	c   chan struct{}

	mu         sync.Mutex
	events     []Event
	overflowed bool
	onEvent    func()
}

// C is signalled when events are pending.
func (w *Watcher) C() <-chan struct{} { return w.c }

// OnEvent makes f run whenever an event is published to w, until it is cleared with nil
// (C is still signalled). f runs in the publisher's goroutine with locks held: it must
// only hand the work over (start a goroutine, set a flag) and return. It is for an owner
// that waits for something else than C, such as an IMAP connection in IDLE waiting for
// its client: it then needs no goroutine of its own blocked on C.
func (w *Watcher) OnEvent(f func()) {
	w.mu.Lock()
	w.onEvent = f
	w.mu.Unlock()
}

// Take returns and clears the pending events; overflowed reports that some were dropped.
func (w *Watcher) Take() (events []Event, overflowed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ev := w.events
	w.events = nil
	return ev, w.overflowed
}

// Close stops the watcher.
func (w *Watcher) Close() {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	if set := w.h.watchers[w.key]; set != nil {
		set.mu.Lock()
		delete(set.ws, w)
		empty := len(set.ws) == 0
		set.mu.Unlock()
		if empty {
			delete(w.h.watchers, w.key)
		}
	}
}

func (h *hub) watch(user string, mailbox int64) *Watcher {
	w := &Watcher{h: h, key: watchKey{user, mailbox}, c: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.watchers[w.key]
	if set == nil {
		set = &watchSet{ws: map[*Watcher]struct{}{}}
		h.watchers[w.key] = set
	}
	set.mu.Lock()
	set.ws[w] = struct{}{}
	set.mu.Unlock()
	return w
}

// publish is called with the user's write lock held, so events reach every watcher in
// commit order.
func (h *hub) publish(user string, mailbox int64, ev Event) {
	h.mu.RLock()
	set := h.watchers[watchKey{user, mailbox}]
	h.mu.RUnlock()
	if set == nil {
		return
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	for w := range set.ws {
		w.mu.Lock()
		if len(w.events) >= MaxPendingEvents {
			w.overflowed = true
		} else {
			w.events = append(w.events, ev)
		}
		if w.onEvent != nil {
			w.onEvent()
		}
		w.mu.Unlock()
		select {
		case w.c <- struct{}{}:
		default:
		}
	}
}
