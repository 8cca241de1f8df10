// Package manual holds the manual blocks of sessions and users and the audit log of changes to
// them: the table the protection engine reads on each request and the explore API writes. It
// imports nothing of ours, so that the API can share its types without the engine.
package manual

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of manual blocks.
const (
	KindSession = "session"
	KindUser    = "user"
)

// Block is a manual block of a session or a user until a time.
type Block struct {
	Kind   string    `json:"kind"`
	ID     string    `json:"id"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason,omitempty"`
	// By is the name of the API token that set it.
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// AuditEntry is one manual action: who did what, when.
type AuditEntry struct {
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Action string    `json:"action"` // block or unblock
	Kind   string    `json:"kind"`
	ID     string    `json:"id"`
	Until  time.Time `json:"until,omitzero"`
	Reason string    `json:"reason,omitempty"`
}

// ErrTooManyBlocks is returned when the table of blocks is full of blocks that have not
// expired: a new block is refused rather than an older one forgotten.
var ErrTooManyBlocks = errors.New("too many active blocks (protection.max_blocks)")

// ErrNotShared says that a block or unblock took effect on this replica only: the shared
// state (state.redis) did not take it.
var ErrNotShared = errors.New("the shared state (state.redis) did not take the change")

// MaxFor bounds how long a manual block lasts.
const MaxFor = 366 * 24 * time.Hour

// maxAudit bounds the audit entries kept in memory.
const maxAudit = 10000

// Table is the table of manual blocks, bounded, with the audit log of changes to it. It is safe
// for concurrent use.
type Table struct {
	mu       sync.RWMutex
	max      int
	sessions map[string]Block
	users    map[string]Block
	// N is the number of entries (expired ones included until they are swept), read without
	// the lock so that a request pays nothing when there are none; NUsers likewise for users.
	N, NUsers atomic.Int64

	auditMu sync.Mutex
	audit   []AuditEntry // a ring once full
	next    int
}

// NewTable returns a table holding at most max blocks.
func NewTable(max int) *Table {
	return &Table{max: max, sessions: map[string]Block{}, users: map[string]Block{}}
}

func (t *Table) table(kind string) map[string]Block {
	if kind == KindUser {
		return t.users
	}
	return t.sessions
}

// Set adds or replaces a block, sweeping expired ones when the table is full.
func (t *Table) Set(b Block, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.table(b.Kind)
	if _, ok := m[b.ID]; !ok && len(t.sessions)+len(t.users) >= t.max {
		t.sweepLocked(now)
		if len(t.sessions)+len(t.users) >= t.max {
			return ErrTooManyBlocks
		}
	}
	m[b.ID] = b
	t.countLocked()
	return nil
}

// Remove deletes a block; false when there was none.
func (t *Table) Remove(kind, id string) (Block, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.table(kind)
	b, ok := m[id]
	delete(m, id)
	t.countLocked()
	return b, ok
}

func (t *Table) sweepLocked(now time.Time) {
	for _, m := range []map[string]Block{t.sessions, t.users} {
		for id, b := range m {
			if !now.Before(b.Until) {
				delete(m, id)
			}
		}
	}
	t.countLocked()
}

func (t *Table) countLocked() {
	t.N.Store(int64(len(t.sessions) + len(t.users)))
	t.NUsers.Store(int64(len(t.users)))
}

// Get returns the block of kind and id in force at now.
func (t *Table) Get(kind, id string, now time.Time) (Block, bool) {
	if id == "" || t.N.Load() == 0 {
		return Block{}, false
	}
	t.mu.RLock()
	b, ok := t.table(kind)[id]
	t.mu.RUnlock()
	if !ok || !now.Before(b.Until) {
		return Block{}, false
	}
	return b, true
}

// List returns the blocks in force at now.
func (t *Table) List(now time.Time) []Block {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []Block
	for _, m := range []map[string]Block{t.sessions, t.users} {
		for _, b := range m {
			if now.Before(b.Until) {
				out = append(out, b)
			}
		}
	}
	return out
}

// Record appends an audit entry, overwriting the oldest once maxAudit are kept.
func (t *Table) Record(e AuditEntry) {
	t.auditMu.Lock()
	defer t.auditMu.Unlock()
	if len(t.audit) < maxAudit {
		t.audit = append(t.audit, e)
		return
	}
	t.audit[t.next] = e
	t.next = (t.next + 1) % maxAudit
}

// AuditOf returns the entries about kind and id, oldest first.
func (t *Table) AuditOf(kind, id string) []AuditEntry {
	t.auditMu.Lock()
	defer t.auditMu.Unlock()
	var out []AuditEntry
	n := len(t.audit)
	for i := range n {
		e := t.audit[(t.next+i)%n]
		if e.Kind == kind && e.ID == id {
			out = append(out, e)
		}
	}
	return out
}

// Replace makes the table hold bs, those in force at now, as far as the bound lets it.
func (t *Table) Replace(bs []Block, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sessions, t.users = map[string]Block{}, map[string]Block{}
	for _, b := range bs {
		if !now.Before(b.Until) || len(t.sessions)+len(t.users) >= t.max {
			continue
		}
		if b.Kind == KindUser {
			t.users[b.ID] = b
		} else if b.Kind == KindSession {
			t.sessions[b.ID] = b
		}
	}
	t.countLocked()
}
