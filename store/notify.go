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

type hub struct {
	mu       sync.Mutex
	watchers map[watchKey]map[*Watcher]struct{}
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
}

// C is signalled when events are pending.
func (w *Watcher) C() <-chan struct{} { return w.c }

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
		delete(set, w)
		if len(set) == 0 {
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
		set = map[*Watcher]struct{}{}
		h.watchers[w.key] = set
	}
	set[w] = struct{}{}
	return w
}

// publish is called with the user's write lock held, so events reach every watcher in
// commit order.
func (h *hub) publish(user string, mailbox int64, ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers[watchKey{user, mailbox}] {
		w.mu.Lock()
		if len(w.events) >= MaxPendingEvents {
			w.overflowed = true
		} else {
			w.events = append(w.events, ev)
		}
		w.mu.Unlock()
		select {
		case w.c <- struct{}{}:
		default:
		}
	}
}
