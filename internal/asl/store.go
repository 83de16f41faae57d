package asl

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Status is an execution's status, with Step Functions' names.
type Status string

// Execution statuses.
const (
	Running   Status = "RUNNING"
	Succeeded Status = "SUCCEEDED"
	Failed    Status = "FAILED"
	TimedOut  Status = "TIMED_OUT"
	Aborted   Status = "ABORTED"
)

// Record is the persisted form of an execution: everything needed to
// resume it after a restart. The runner owns its contents; a Store keeps it
// as one document and indexes its Timers and Tokens.
type Record struct {
	ID        string          `json:"id"`
	Machine   string          `json:"machine"`
	Name      string          `json:"name"`
	Status    Status          `json:"status"`
	Input     json.RawMessage `json:"input"`
	Output    json.RawMessage `json:"output,omitempty"`
	Error     string          `json:"error,omitempty"`
	Cause     string          `json:"cause,omitempty"`
	StartTime time.Time       `json:"startTime"`
	StopTime  time.Time       `json:"stopTime,omitzero"`
	// Version is the optimistic-concurrency counter: Update succeeds only
	// when the stored Version equals the record's, then increments both.
	Version int64   `json:"version"`
	NextID  int     `json:"nextId"` // frame id counter
	Frames  []Frame `json:"frames,omitempty"`
	History []Event `json:"history"`
	// Timers and Tokens are derived from Frames by the runner; the store
	// replaces the execution's index entries with these on every write.
	Timers []Timer `json:"timers,omitempty"`
	Tokens []Token `json:"tokens,omitempty"`
}

// Frame is one thread of an execution: the root, or a Parallel branch.
type Frame struct {
	ID      int             `json:"id"`
	Parent  int             `json:"parent,omitempty"` // 0 for the root
	Branch  int             `json:"branch,omitempty"` // index in the parent's Branches
	State   string          `json:"state"`
	Input   json.RawMessage `json:"input"`   // the state's raw input
	Entered time.Time       `json:"entered"` // when the state was entered
	// Attempts counts retries per Retrier of the current state.
	Attempts []int    `json:"attempts,omitempty"`
	Wait     waitKind `json:"wait,omitempty"`
	Token    string   `json:"token,omitempty"`
	// Run counts handler calls scheduled by this frame, so a late result
	// of an abandoned call is recognized and dropped.
	Run int `json:"run,omitempty"`
	// Heartbeat is the awaited callback's heartbeat interval in seconds.
	Heartbeat int `json:"heartbeat,omitempty"`
	// Timers are the frame's pending timers; Record.Timers is derived
	// from them.
	Timers []FrameTimer `json:"timers,omitempty"`
	// Results and Pending track a Parallel state's branches.
	Results []json.RawMessage `json:"results,omitempty"`
	Pending int               `json:"pending,omitempty"`
	// NextItem is the index of a Map state's next item to start.
	NextItem int `json:"nextItem,omitempty"`
}

type waitKind string

const (
	waitNone     waitKind = ""
	waitTask     waitKind = "task"     // a handler call is in flight
	waitTimer    waitKind = "timer"    // a Wait state
	waitRetry    waitKind = "retry"    // a Retry interval
	waitToken    waitKind = "token"    // .waitForTaskToken
	waitBranches waitKind = "branches" // a Parallel state's branches run
)

// TimerKind says what a timer does when it fires.
type TimerKind string

// Timer kinds.
const (
	TimerWait      TimerKind = "wait"      // a Wait state ends
	TimerRetry     TimerKind = "retry"     // a Retry interval ends
	TimerTimeout   TimerKind = "timeout"   // a callback task times out (States.Timeout)
	TimerHeartbeat TimerKind = "heartbeat" // a callback task missed its heartbeat
)

// Timer is a due time attached to one frame of an execution.
type Timer struct {
	ExecutionID string    `json:"executionId"`
	Frame       int       `json:"frame"`
	Kind        TimerKind `json:"kind"`
	Due         time.Time `json:"due"`
}

// Token is a task token of a .waitForTaskToken task.
type Token struct {
	Token       string `json:"token"`
	ExecutionID string `json:"executionId"`
	Frame       int    `json:"frame"`
	State       string `json:"state"`
}

// Event is one history entry, named like Step Functions' history events
// (ExecutionStarted, TaskStateEntered, TaskSucceeded, ...).
type Event struct {
	Type      string    `json:"type"`
	StateName string    `json:"stateName,omitempty"`
	Time      time.Time `json:"time"`
	Error     string    `json:"error,omitempty"`
	Cause     string    `json:"cause,omitempty"`
}

// Store persists executions, and indexes their timers and task tokens. An
// implementation must make each Create and Update atomic: the record, its
// timers and its tokens change together or not at all. Records are returned
// as copies; callers may modify them freely.
type Store interface {
	// Create stores a new execution. Returns escrow.ErrConflict if an
	// execution with the same ID exists.
	Create(ctx context.Context, rec *Record) error
	// Update replaces an execution when the stored Version equals
	// rec.Version, then increments rec.Version. It replaces the
	// execution's timers and tokens with rec.Timers and rec.Tokens.
	// Returns escrow.ErrNotFound if there is no such execution and
	// escrow.ErrConflict if the Version differs (another writer won).
	Update(ctx context.Context, rec *Record) error
	// Get returns an execution. Returns escrow.ErrNotFound if missing.
	Get(ctx context.Context, id string) (*Record, error)
	// Running returns the IDs of every execution whose Status is Running.
	Running(ctx context.Context) ([]string, error)
	// DueTimers returns up to limit timers with Due <= now, earliest first.
	DueTimers(ctx context.Context, now time.Time, limit int) ([]Timer, error)
	// LookupToken returns the token's entry. Returns escrow.ErrNotFound if
	// the token is unknown or no longer awaited.
	LookupToken(ctx context.Context, token string) (Token, error)
}

// MemoryStore is a Store in memory, for tests and for runners that need
// no persistence.
type MemoryStore struct {
	mu     sync.Mutex
	recs   map[string][]byte
	timers map[string][]Timer // by execution
	tokens map[string]Token
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{recs: map[string][]byte{}, timers: map[string][]Timer{}, tokens: map[string]Token{}}
}

// Create implements Store.
func (s *MemoryStore) Create(ctx context.Context, rec *Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("marshal execution: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recs[rec.ID]; ok {
		return fmt.Errorf("create execution %s: %w", rec.ID, escrow.ErrConflict)
	}
	s.recs[rec.ID] = b
	s.index(rec)
	return nil
}

// Update implements Store.
func (s *MemoryStore) Update(ctx context.Context, rec *Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.recs[rec.ID]
	if !ok {
		return fmt.Errorf("update execution %s: %w", rec.ID, escrow.ErrNotFound)
	}
	var cur struct {
		Version int64 `json:"version"`
	}
	if err := json.Unmarshal(old, &cur); err != nil {
		return fmt.Errorf("update execution: %w", err)
	}
	if cur.Version != rec.Version {
		return fmt.Errorf("update execution %s: %w", rec.ID, escrow.ErrConflict)
	}
	rec.Version++
	b, err := json.Marshal(rec)
	if err != nil {
		rec.Version--
		return fmt.Errorf("marshal execution: %w", err)
	}
	s.recs[rec.ID] = b
	for tok, t := range s.tokens {
		if t.ExecutionID == rec.ID {
			delete(s.tokens, tok)
		}
	}
	s.index(rec)
	return nil
}

func (s *MemoryStore) index(rec *Record) {
	s.timers[rec.ID] = append([]Timer(nil), rec.Timers...)
	if len(rec.Timers) == 0 {
		delete(s.timers, rec.ID)
	}
	for _, t := range rec.Tokens {
		s.tokens[t.Token] = t
	}
}

// Get implements Store.
func (s *MemoryStore) Get(ctx context.Context, id string) (*Record, error) {
	s.mu.Lock()
	b, ok := s.recs[id]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("get execution %s: %w", id, escrow.ErrNotFound)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("unmarshal execution: %w", err)
	}
	return &rec, nil
}

// Running implements Store.
func (s *MemoryStore) Running(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, b := range s.recs {
		var r struct {
			Status Status `json:"status"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("unmarshal execution: %w", err)
		}
		if r.Status == Running {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// DueTimers implements Store.
func (s *MemoryStore) DueTimers(ctx context.Context, now time.Time, limit int) ([]Timer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []Timer
	for _, ts := range s.timers {
		for _, t := range ts {
			if !t.Due.After(now) {
				due = append(due, t)
			}
		}
	}
	sort.Slice(due, func(i, j int) bool {
		if !due[i].Due.Equal(due[j].Due) {
			return due[i].Due.Before(due[j].Due)
		}
		return due[i].ExecutionID < due[j].ExecutionID
	})
	if limit > 0 && len(due) > limit {
		due = due[:limit]
	}
	return due, nil
}

// LookupToken implements Store.
func (s *MemoryStore) LookupToken(ctx context.Context, token string) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[token]
	if !ok {
		return Token{}, fmt.Errorf("lookup task token: %w", escrow.ErrNotFound)
	}
	return t, nil
}
