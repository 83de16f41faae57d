package asl

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Handler runs a Task state. It receives the task's input (for the Lambda
// integration, the resolved Payload) and returns its result. A *TaskError
// is matched by name in Retry and Catch; any other error is
// States.TaskFailed. Handlers may run more than once for one task (after a
// crash, as in Step Functions), so they must be idempotent.
type Handler func(ctx context.Context, input json.RawMessage) (json.RawMessage, error)

// TaskError is a named task failure, the equivalent of a Lambda function
// error of type Name.
type TaskError struct {
	Name  string
	Cause string
}

func (e *TaskError) Error() string { return e.Name + ": " + e.Cause }

// Config configures a Runner.
type Config struct {
	Store  Store
	Clock  escrow.Clock
	Logger *slog.Logger
	// Resources binds Task states to handlers: lambda:invoke tasks by
	// their Parameters.FunctionName (after substitution), every other Task
	// by its Resource.
	Resources map[string]Handler
	// TickInterval is how often Run fires due timers (default 250ms).
	TickInterval time.Duration
}

// Runner executes state machines. It is safe for concurrent use. Within one
// process, steps of one execution are serialized; across processes the
// Store's Version check keeps a record from being overwritten.
type Runner struct {
	store    Store
	clock    escrow.Clock
	log      *slog.Logger
	res      map[string]Handler
	tick     time.Duration
	machines map[string]*Machine

	mu       sync.Mutex
	locks    map[string]*execLock
	inflight map[string]bool // exec/frame of handler calls running here
	busy     int
	idle     chan struct{} // closed while busy == 0
}

type execLock struct {
	mu   sync.Mutex
	refs int
}

// New returns a Runner for machines (keyed by the name Start takes). It
// fails if a Task state's resource has no handler in cfg.Resources,
// naming the state.
func New(cfg Config, machines map[string]*Machine) (*Runner, error) {
	if cfg.Store == nil {
		return nil, errors.New("asl: Config.Store is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = escrow.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 250 * time.Millisecond
	}
	for name, m := range machines {
		err := m.walk(func(s *State) error {
			if s.Type == "Task" && cfg.Resources[s.bindingKey()] == nil {
				if s.FunctionName != "" {
					return fmt.Errorf("machine %s: state %q: FunctionName %s not bound", name, s.Name, s.FunctionName)
				}
				return fmt.Errorf("machine %s: state %q: Resource %s not bound", name, s.Name, s.Resource)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("asl: %w", err)
		}
	}
	idle := make(chan struct{})
	close(idle)
	return &Runner{
		store: cfg.Store, clock: cfg.Clock, log: cfg.Logger, res: cfg.Resources,
		tick: cfg.TickInterval, machines: machines,
		locks: map[string]*execLock{}, inflight: map[string]bool{}, idle: idle,
	}, nil
}

func (r *Runner) lock(id string) func() {
	r.mu.Lock()
	l := r.locks[id]
	if l == nil {
		l = &execLock{}
		r.locks[id] = l
	}
	l.refs++
	r.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		r.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(r.locks, id)
		}
		r.mu.Unlock()
	}
}

// goBusy runs f in a goroutine that Settle waits for.
func (r *Runner) goBusy(f func()) {
	r.mu.Lock()
	if r.busy == 0 {
		r.idle = make(chan struct{})
	}
	r.busy++
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			if r.busy--; r.busy == 0 {
				close(r.idle)
			}
			r.mu.Unlock()
		}()
		f()
	}()
}

// Settle waits until no execution is advancing in this runner: every
// execution has finished or waits for a timer or a task token. Tests call
// it after Start, SendTask* and Tick.
func (r *Runner) Settle(ctx context.Context) error {
	for {
		r.mu.Lock()
		idle, busy := r.idle, r.busy
		r.mu.Unlock()
		if busy == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

func executionID(machine, name string) string {
	return "arn:aws:states:local:000000000000:execution:" + machine + ":" + name
}

// Start starts an execution of machine and returns its ID. An empty name
// gets a random one. Starting an existing name again with the same input
// returns the same ID (Step Functions' idempotency); with another input it
// fails with escrow.ErrConflict. An unknown machine is escrow.ErrNotFound;
// a bad name or input is escrow.ErrInvalid.
func (r *Runner) Start(ctx context.Context, machine, name string, input json.RawMessage) (string, error) {
	m := r.machines[machine]
	if m == nil {
		return "", escrow.Errorf(escrow.CodeNotFound, "state machine %q not found", machine)
	}
	if name == "" {
		name = newUUID()
	}
	if !nameRE.MatchString(name) {
		return "", escrow.Errorf(escrow.CodeInvalid, "execution name %q is invalid", name)
	}
	if len(input) == 0 {
		input = json.RawMessage("{}")
	}
	v, err := decode(input)
	if err != nil {
		return "", escrow.Errorf(escrow.CodeInvalid, "execution input is not JSON")
	}
	input = encode(v)
	now := r.clock.Now().UTC()
	rec := &Record{
		ID: executionID(machine, name), Machine: machine, Name: name, Status: Running,
		Input: input, StartTime: now, NextID: 2,
		History: []Event{{Type: "ExecutionStarted", Time: now}},
	}
	rec.Frames = []Frame{{ID: 1}}
	r.enter(rec, &rec.Frames[0], m.StartAt, input)
	derive(rec)
	if err := r.store.Create(ctx, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			old, gerr := r.store.Get(ctx, rec.ID)
			if gerr == nil && string(old.Input) == string(input) {
				return rec.ID, nil
			}
			return "", escrow.Errorf(escrow.CodeConflict, "execution %q already exists", name)
		}
		return "", fmt.Errorf("start execution: %w", err)
	}
	r.log.InfoContext(ctx, "asl execution started", "execution", rec.ID)
	r.kick(ctx, rec.ID)
	return rec.ID, nil
}

// kick advances an execution in the background.
func (r *Runner) kick(ctx context.Context, id string) {
	ctx = context.WithoutCancel(ctx)
	r.goBusy(func() { r.drive(ctx, id) })
}

// scope returns the states a frame runs in: the machine's, or a branch's.
func (r *Runner) scope(rec *Record, f *Frame) (*Machine, error) {
	m := r.machines[rec.Machine]
	if m == nil {
		return nil, fmt.Errorf("state machine %q not loaded", rec.Machine)
	}
	if f.Parent == 0 {
		return m, nil
	}
	p := findFrame(rec, f.Parent)
	if p == nil {
		return nil, fmt.Errorf("frame %d: parent %d missing", f.ID, f.Parent)
	}
	pm, err := r.scope(rec, p)
	if err != nil {
		return nil, err
	}
	ps := pm.States[p.State]
	b := f.Branch
	if ps != nil && ps.Type == "Map" {
		b = 0 // every item runs the one processor
	}
	if ps == nil || b >= len(ps.Branches) {
		return nil, fmt.Errorf("frame %d: branch %d of %q missing", f.ID, f.Branch, p.State)
	}
	return ps.Branches[b], nil
}

func (r *Runner) stateOf(rec *Record, f *Frame) (*State, error) {
	m, err := r.scope(rec, f)
	if err != nil {
		return nil, err
	}
	s := m.States[f.State]
	if s == nil {
		return nil, fmt.Errorf("state %q not in the machine (definition changed?)", f.State)
	}
	return s, nil
}

func findFrame(rec *Record, id int) *Frame {
	for i := range rec.Frames {
		if rec.Frames[i].ID == id {
			return &rec.Frames[i]
		}
	}
	return nil
}

func (rec *Record) event(typ, state string, t time.Time) {
	rec.History = append(rec.History, Event{Type: typ, StateName: state, Time: t})
}

// enter moves frame f into state name with input.
func (r *Runner) enter(rec *Record, f *Frame, name string, input json.RawMessage) {
	now := r.clock.Now().UTC()
	m, err := r.scope(rec, f)
	typ := "Unknown"
	if err == nil && m.States[name] != nil {
		typ = m.States[name].Type
	}
	*f = Frame{ID: f.ID, Parent: f.Parent, Branch: f.Branch, State: name, Input: input, Entered: now}
	rec.event(typ+"StateEntered", name, now)
}

// call is a handler invocation decided under the lock and run outside it.
type call struct {
	exec     string
	frame    int
	run      int
	state    *State
	input    json.RawMessage
	token    string // callback tasks
	callback bool
	timeout  int // seconds, 0: none
	// heartbeat is the callback's HeartbeatSeconds, 0: none.
	heartbeat int
}

// seconds resolves TimeoutSeconds/HeartbeatSeconds or their Path variant.
func seconds(fixed int, path, field string, in, ctxObj any) (int, error) {
	if path == "" {
		return fixed, nil
	}
	jp, _ := parsePath(path)
	v, err := jp.mustGet(field, in, ctxObj)
	if err != nil {
		return 0, err
	}
	n, ok := number(v)
	if !ok || n < 1 || n != math.Trunc(n) || n > 1<<31 {
		return 0, pathFailure("States.Runtime", "%s %s is not a positive integer", field, path)
	}
	return int(n), nil
}

// drive advances an execution until it waits or ends.
func (r *Runner) drive(ctx context.Context, id string) {
	for {
		c, err := r.advance(ctx, id)
		if err != nil {
			r.log.ErrorContext(ctx, "asl advance execution", "execution", id, "err", err)
			return
		}
		if c == nil {
			return
		}
		r.invoke(ctx, c)
	}
}

// advance runs state transitions of runnable frames until a handler call
// is due (returned) or nothing is runnable. It saves after every step.
func (r *Runner) advance(ctx context.Context, id string) (*call, error) {
	unlock := r.lock(id)
	defer unlock()
	rec, err := r.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	for rec.Status == Running {
		var f *Frame
		for i := range rec.Frames {
			if rec.Frames[i].Wait == waitNone {
				f = &rec.Frames[i]
				break
			}
		}
		if f == nil {
			return nil, nil
		}
		if len(rec.History) >= maxHistory {
			// Stops a Pass/Choice loop from spinning forever under the
			// lock, as Step Functions' history limit does.
			r.failExecution(rec, "States.Runtime", fmt.Sprintf("execution history reached %d events", maxHistory))
			return nil, r.save(ctx, rec)
		}
		c := r.step(rec, f)
		if c != nil {
			// Marked before the save so that a concurrent Resume does not
			// start the same call again.
			r.mu.Lock()
			r.inflight[inflightKey(id, c.frame)] = true
			r.mu.Unlock()
		}
		if err := r.save(ctx, rec); err != nil {
			if c != nil {
				r.mu.Lock()
				delete(r.inflight, inflightKey(id, c.frame))
				r.mu.Unlock()
			}
			return nil, err
		}
		if c != nil {
			return c, nil
		}
	}
	return nil, nil
}

// maxHistory caps the events of one execution. Step Functions allows
// 25,000; since every transition rewrites the whole record, a lower cap
// keeps a runaway loop cheap, and no Escrow flow comes near it.
const maxHistory = 2000

func inflightKey(id string, frame int) string { return id + "/" + strconv.Itoa(frame) }

// derive rebuilds the timer and token index entries from the frames.
func derive(rec *Record) {
	rec.Timers, rec.Tokens = nil, nil
	if rec.Status != Running {
		return
	}
	for _, f := range rec.Frames {
		for _, t := range f.Timers {
			rec.Timers = append(rec.Timers, Timer{ExecutionID: rec.ID, Frame: f.ID, Kind: t.Kind, Due: t.Due})
		}
		if f.Wait == waitToken {
			rec.Tokens = append(rec.Tokens, Token{Token: f.Token, ExecutionID: rec.ID, Frame: f.ID, State: f.State})
		}
	}
}

func (r *Runner) save(ctx context.Context, rec *Record) error {
	derive(rec)
	if err := r.store.Update(ctx, rec); err != nil {
		return fmt.Errorf("save execution: %w", err)
	}
	// Only running records are ever changed, so a saved end status is the
	// transition. The cause is not logged: it may quote a handler's error.
	if rec.Status != Running {
		r.log.InfoContext(ctx, "asl execution ended", "execution", rec.ID, "status", rec.Status, "error", rec.Error)
	}
	return nil
}

// FrameTimer is a pending timer of a frame (persisted inside the frame;
// the store's index is derived from it).
type FrameTimer struct {
	Kind TimerKind `json:"kind"`
	Due  time.Time `json:"due"`
}

// step performs the current state of f. It returns a call when a handler
// must run.
func (r *Runner) step(rec *Record, f *Frame) *call {
	st, err := r.stateOf(rec, f)
	if err != nil {
		r.failExecution(rec, "States.Runtime", err.Error())
		return nil
	}
	raw, err := decode(f.Input)
	if err != nil {
		r.failExecution(rec, "States.Runtime", "state input is not JSON")
		return nil
	}
	ctxObj := r.contextObject(rec, f, "")
	in, err := inputPath(st, raw, ctxObj)
	if err != nil {
		r.fail(rec, f, st, err)
		return nil
	}
	switch st.Type {
	case "Pass":
		result := in
		switch {
		case st.Parameters != nil:
			result, err = st.Parameters.eval(in, ctxObj)
		case st.Result != nil:
			result, err = decode(st.Result)
		}
		if err != nil {
			r.fail(rec, f, st, err)
			return nil
		}
		r.finishState(rec, f, st, raw, result, ctxObj)
	case "Choice":
		next := st.Default
		for _, rule := range st.Choices {
			ok, err := rule.eval(in, ctxObj)
			if err != nil {
				r.fail(rec, f, st, err)
				return nil
			}
			if ok {
				next = rule.Next
				break
			}
		}
		if next == "" {
			r.fail(rec, f, st, &runtimeError{"States.NoChoiceMatched", fmt.Sprintf("no Choice rule of %q matched and there is no Default", st.Name)})
			return nil
		}
		out, err := outputPath(st, in, ctxObj)
		if err != nil {
			r.fail(rec, f, st, err)
			return nil
		}
		rec.event("ChoiceStateExited", st.Name, r.clock.Now().UTC())
		r.enter(rec, f, next, encode(out))
	case "Wait":
		due, err := waitUntil(st, in, ctxObj, f.Entered)
		if err != nil {
			r.fail(rec, f, st, err)
			return nil
		}
		if !due.After(r.clock.Now()) {
			// Already due (a timestamp in the past): no timer, no tick lag.
			out, err := outputPath(st, in, ctxObj)
			if err != nil {
				r.fail(rec, f, st, err)
				return nil
			}
			r.transition(rec, f, st, out)
			return nil
		}
		f.Wait = waitTimer
		f.Timers = []FrameTimer{{Kind: TimerWait, Due: due}}
	case "Succeed":
		out, err := outputPath(st, in, ctxObj)
		if err != nil {
			r.fail(rec, f, st, err)
			return nil
		}
		rec.event("SucceedStateExited", st.Name, r.clock.Now().UTC())
		r.endFrame(rec, f, out)
	case "Fail":
		r.failFrame(rec, f, st.Error, st.Cause)
	case "Parallel":
		bin := in
		if st.Parameters != nil {
			if bin, err = st.Parameters.eval(in, ctxObj); err != nil {
				r.fail(rec, f, st, err)
				return nil
			}
		}
		rec.event("ParallelStateStarted", st.Name, r.clock.Now().UTC())
		f.Wait = waitBranches
		f.Pending = len(st.Branches)
		f.Results = make([]json.RawMessage, len(st.Branches))
		parent := f.ID
		for i, b := range st.Branches {
			rec.Frames = append(rec.Frames, Frame{ID: rec.NextID, Parent: parent, Branch: i})
			rec.NextID++
			nf := &rec.Frames[len(rec.Frames)-1]
			r.enter(rec, nf, b.StartAt, encode(bin))
		}
	case "Task":
		return r.schedule(rec, f, st, in)
	case "Map":
		items, err := mapItems(st, in, ctxObj)
		if err != nil {
			r.fail(rec, f, st, err)
			return nil
		}
		rec.event("MapStateStarted", st.Name, r.clock.Now().UTC())
		if len(items) == 0 {
			r.finishState(rec, f, st, raw, []any{}, ctxObj)
			return nil
		}
		f.Wait = waitBranches
		f.Pending = len(items)
		f.Results = make([]json.RawMessage, len(items))
		f.NextItem = 0
		if err := r.refill(rec, f.ID); err != nil {
			r.fail(rec, findFrame(rec, f.ID), st, err)
		}
	}
	return nil
}

// mapItems resolves a Map state's ItemsPath, which must give an array.
func mapItems(st *State, in, ctxObj any) ([]any, error) {
	items := in
	if st.ItemsPath != "" {
		jp, _ := parsePath(st.ItemsPath)
		v, err := jp.mustGet("ItemsPath", in, ctxObj)
		if err != nil {
			return nil, err
		}
		items = v
	}
	arr, ok := items.([]any)
	if !ok {
		return nil, pathFailure("States.Runtime", "ItemsPath of %q does not give an array", st.Name)
	}
	return arr, nil
}

// refill starts Map iterations of frame pid up to MaxConcurrency running.
func (r *Runner) refill(rec *Record, pid int) error {
	p := findFrame(rec, pid)
	st, err := r.stateOf(rec, p)
	if err != nil {
		return err
	}
	raw, err := decode(p.Input)
	if err != nil {
		return err
	}
	ctxObj := r.contextObject(rec, p, "")
	in, err := inputPath(st, raw, ctxObj)
	if err != nil {
		return err
	}
	items, err := mapItems(st, in, ctxObj)
	if err != nil {
		return err
	}
	running := 0
	for _, c := range rec.Frames {
		if c.Parent == pid {
			running++
		}
	}
	for {
		p = findFrame(rec, pid)
		i := p.NextItem
		if i >= len(items) || (st.MaxConcurrency > 0 && running >= st.MaxConcurrency) {
			return nil
		}
		item := items[i]
		if st.Parameters != nil {
			c := ctxObj.(map[string]any)
			c["Map"] = map[string]any{"Item": map[string]any{"Index": json.Number(strconv.Itoa(i)), "Value": item}}
			if item, err = st.Parameters.eval(in, c); err != nil {
				return err
			}
		}
		p.NextItem++
		rec.Frames = append(rec.Frames, Frame{ID: rec.NextID, Parent: pid, Branch: i})
		rec.NextID++
		running++
		rec.event("MapIterationStarted", st.Name, r.clock.Now().UTC())
		r.enter(rec, &rec.Frames[len(rec.Frames)-1], st.Branches[0].StartAt, encode(item))
	}
}

func inputPath(st *State, raw, ctxObj any) (any, error) {
	if st.InputPath == nil {
		return raw, nil
	}
	if *st.InputPath == nullPath {
		return map[string]any{}, nil
	}
	jp, _ := parsePath(*st.InputPath)
	return jp.mustGet("InputPath", raw, ctxObj)
}

func outputPath(st *State, v, ctxObj any) (any, error) {
	if st.OutputPath == nil {
		return v, nil
	}
	if *st.OutputPath == nullPath {
		return map[string]any{}, nil
	}
	jp, _ := parsePath(*st.OutputPath)
	return jp.mustGet("OutputPath", v, ctxObj)
}

func applyResultPath(p *string, raw, result any) (any, error) {
	if p == nil {
		return result, nil
	}
	if *p == nullPath {
		return raw, nil
	}
	jp, _ := parsePath(*p)
	return jp.set(raw, result)
}

func waitUntil(st *State, in, ctxObj any, entered time.Time) (time.Time, error) {
	switch {
	case st.Seconds != nil:
		return entered.Add(time.Duration(*st.Seconds) * time.Second), nil
	case st.Timestamp != "":
		return parseTimestamp(st.Timestamp)
	case st.SecondsPath != "":
		jp, _ := parsePath(st.SecondsPath)
		v, err := jp.mustGet("SecondsPath", in, ctxObj)
		if err != nil {
			return time.Time{}, err
		}
		n, ok := number(v)
		if !ok || n < 0 || n != math.Trunc(n) {
			return time.Time{}, pathFailure("States.Runtime", "SecondsPath %s is not a non-negative integer", st.SecondsPath)
		}
		return entered.Add(time.Duration(n) * time.Second), nil
	}
	jp, _ := parsePath(st.TimestampPath)
	v, err := jp.mustGet("TimestampPath", in, ctxObj)
	if err != nil {
		return time.Time{}, err
	}
	s, _ := v.(string)
	t, perr := parseTimestamp(s)
	if perr != nil {
		return time.Time{}, pathFailure("States.Runtime", "TimestampPath %s is not an RFC 3339 timestamp", st.TimestampPath)
	}
	return t, nil
}

// finishState applies ResultSelector, ResultPath and OutputPath to a
// state's result and moves on.
func (r *Runner) finishState(rec *Record, f *Frame, st *State, raw, result, ctxObj any) {
	var err error
	if st.ResultSelector != nil {
		if result, err = st.ResultSelector.eval(result, ctxObj); err != nil {
			r.fail(rec, f, st, err)
			return
		}
	}
	out, err := applyResultPath(st.ResultPath, raw, result)
	if err == nil {
		out, err = outputPath(st, out, ctxObj)
	}
	if err != nil {
		r.fail(rec, f, st, err)
		return
	}
	r.transition(rec, f, st, out)
}

func (r *Runner) transition(rec *Record, f *Frame, st *State, out any) {
	rec.event(st.Type+"StateExited", st.Name, r.clock.Now().UTC())
	if st.End {
		r.endFrame(rec, f, out)
		return
	}
	r.enter(rec, f, st.Next, encode(out))
}

// endFrame ends a frame with output: the execution's, or a branch's.
func (r *Runner) endFrame(rec *Record, f *Frame, out any) {
	now := r.clock.Now().UTC()
	if f.Parent == 0 {
		rec.Status, rec.Output, rec.StopTime, rec.Frames = Succeeded, encode(out), now, nil
		rec.event("ExecutionSucceeded", "", now)
		return
	}
	pid, branch := f.Parent, f.Branch
	removeFrames(rec, f.ID)
	p := findFrame(rec, pid)
	p.Results[branch] = encode(out)
	p.Pending--
	if p.Pending > 0 {
		if p.NextItem > 0 { // a Map with items left to start
			if err := r.refill(rec, pid); err != nil {
				r.failExecution(rec, "States.Runtime", err.Error())
			}
		}
		return
	}
	results := make([]any, len(p.Results))
	for i, b := range p.Results {
		results[i], _ = decode(b)
	}
	p.Wait, p.Results, p.Pending, p.NextItem = waitNone, nil, 0, 0
	st, err := r.stateOf(rec, p)
	if err != nil {
		r.failExecution(rec, "States.Runtime", err.Error())
		return
	}
	rec.event(st.Type+"StateSucceeded", st.Name, now)
	raw, _ := decode(p.Input)
	r.finishState(rec, p, st, raw, results, r.contextObject(rec, p, ""))
}

// removeFrames removes frame id and all its descendants.
func removeFrames(rec *Record, id int) {
	dead := map[int]bool{id: true}
	for changed := true; changed; {
		changed = false
		for _, f := range rec.Frames {
			if dead[f.Parent] && !dead[f.ID] {
				dead[f.ID], changed = true, true
			}
		}
	}
	kept := rec.Frames[:0]
	for _, f := range rec.Frames {
		if !dead[f.ID] {
			kept = append(kept, f)
		}
	}
	rec.Frames = kept
}

func (r *Runner) failExecution(rec *Record, name, cause string) {
	now := r.clock.Now().UTC()
	rec.Status, rec.Error, rec.Cause, rec.StopTime, rec.Frames = Failed, name, cause, now, nil
	rec.History = append(rec.History, Event{Type: "ExecutionFailed", Time: now, Error: name, Cause: cause})
}

// failFrame ends a frame with an error that its state does not handle: the
// execution fails, or the enclosing Parallel state gets the error.
func (r *Runner) failFrame(rec *Record, f *Frame, name, cause string) {
	if f.Parent == 0 {
		r.failExecution(rec, name, cause)
		return
	}
	pid := f.Parent
	var children []int
	for _, c := range rec.Frames {
		if c.Parent == pid {
			children = append(children, c.ID)
		}
	}
	for _, id := range children {
		removeFrames(rec, id)
	}
	p := findFrame(rec, pid)
	p.Wait, p.Results, p.Pending, p.NextItem = waitNone, nil, 0, 0
	st, err := r.stateOf(rec, p)
	if err != nil {
		r.failExecution(rec, "States.Runtime", err.Error())
		return
	}
	rec.History = append(rec.History, Event{Type: st.Type + "StateFailed", StateName: st.Name, Time: r.clock.Now().UTC(), Error: name, Cause: cause})
	r.handleError(rec, p, st, name, cause)
}

// fail routes an evaluation error: States.Runtime-class errors fail the
// execution; others go through the state's Retry and Catch.
func (r *Runner) fail(rec *Record, f *Frame, st *State, err error) {
	var rt *runtimeError
	if errors.As(err, &rt) {
		if rt.name == "States.NoChoiceMatched" {
			r.failFrame(rec, f, rt.name, rt.cause)
			return
		}
		r.failExecution(rec, rt.name, rt.cause)
		return
	}
	r.handleError(rec, f, st, "States.Runtime", err.Error())
}

func matches(names []string, errName string) bool {
	for _, n := range names {
		switch {
		case n == errName, n == "States.ALL":
			return true
		case n == "States.TaskFailed" && errName != "States.Timeout" && errName != "States.Runtime":
			return true
		}
	}
	return false
}

// handleError applies Retry, then Catch, else fails the frame.
func (r *Runner) handleError(rec *Record, f *Frame, st *State, name, cause string) {
	now := r.clock.Now().UTC()
	f.Wait, f.Token, f.Timers, f.Heartbeat = waitNone, "", nil, 0
	for i, rt := range st.Retry {
		if !matches(rt.ErrorEquals, name) {
			continue
		}
		if len(f.Attempts) < len(st.Retry) {
			f.Attempts = append(f.Attempts, make([]int, len(st.Retry)-len(f.Attempts))...)
		}
		if f.Attempts[i] >= rt.MaxAttempts {
			break
		}
		f.Attempts[i]++
		delay := float64(rt.IntervalSeconds) * math.Pow(rt.BackoffRate, float64(f.Attempts[i]-1))
		f.Wait = waitRetry
		f.Timers = []FrameTimer{{Kind: TimerRetry, Due: now.Add(time.Duration(delay * float64(time.Second)))}}
		return
	}
	for _, c := range st.Catch {
		if !matches(c.ErrorEquals, name) {
			continue
		}
		raw, _ := decode(f.Input)
		out, err := applyResultPath(c.ResultPath, raw, map[string]any{"Error": name, "Cause": cause})
		if err != nil {
			var rt *runtimeError
			errors.As(err, &rt)
			r.failExecution(rec, rt.name, rt.cause)
			return
		}
		rec.event(st.Type+"StateExited", st.Name, now)
		r.enter(rec, f, c.Next, encode(out))
		return
	}
	r.failFrame(rec, f, name, cause)
}

// contextObject builds $$ for a frame.
func (r *Runner) contextObject(rec *Record, f *Frame, token string) any {
	input, _ := decode(rec.Input)
	retries := 0
	for _, n := range f.Attempts {
		retries += n
	}
	c := map[string]any{
		"Execution": map[string]any{
			"Id": rec.ID, "Name": rec.Name, "StartTime": formatTimestamp(rec.StartTime), "Input": input,
		},
		"StateMachine": map[string]any{"Name": rec.Machine},
		"State": map[string]any{
			"Name": f.State, "EnteredTime": formatTimestamp(f.Entered), "RetryCount": json.Number(strconv.Itoa(retries)),
		},
	}
	if token != "" {
		c["Task"] = map[string]any{"Token": token}
	}
	return c
}

func newToken() string {
	var b [48]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// schedule prepares a Task's handler call.
func (r *Runner) schedule(rec *Record, f *Frame, st *State, in any) *call {
	now := r.clock.Now().UTC()
	c := &call{exec: rec.ID, frame: f.ID, state: st, callback: st.Callback}
	if st.Callback {
		c.token = newToken()
	}
	ctxObj := r.contextObject(rec, f, c.token)
	params := in
	var err error
	if st.Parameters != nil && st.Payload == nil {
		params, err = st.Parameters.eval(in, ctxObj)
	}
	if st.Payload != nil {
		params, err = st.Payload.eval(in, ctxObj)
	}
	if err != nil {
		r.fail(rec, f, st, err)
		return nil
	}
	c.input = encode(params)
	timeout, err := seconds(st.TimeoutSeconds, st.TimeoutSecondsPath, "TimeoutSecondsPath", in, ctxObj)
	if err == nil {
		var hb int
		hb, err = seconds(st.HeartbeatSeconds, st.HeartbeatSecondsPath, "HeartbeatSecondsPath", in, ctxObj)
		c.timeout, c.heartbeat = timeout, hb
	}
	if err != nil {
		r.fail(rec, f, st, err)
		return nil
	}
	f.Run++
	c.run = f.Run
	rec.event("TaskScheduled", st.Name, now)
	if st.Callback {
		f.Wait, f.Token = waitToken, c.token
		f.Timers = nil
		if c.timeout > 0 {
			f.Timers = append(f.Timers, FrameTimer{Kind: TimerTimeout, Due: now.Add(time.Duration(c.timeout) * time.Second)})
		}
		if c.heartbeat > 0 {
			f.Heartbeat = c.heartbeat
			f.Timers = append(f.Timers, FrameTimer{Kind: TimerHeartbeat, Due: now.Add(time.Duration(c.heartbeat) * time.Second)})
		}
	} else {
		f.Wait = waitTask
	}
	return c
}

// invoke runs a handler outside the execution lock and applies its result.
func (r *Runner) invoke(ctx context.Context, c *call) {
	defer func() {
		r.mu.Lock()
		delete(r.inflight, inflightKey(c.exec, c.frame))
		r.mu.Unlock()
	}()
	h := r.res[c.state.bindingKey()]
	hctx := ctx
	if !c.callback && c.timeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, time.Duration(c.timeout)*time.Second)
		defer cancel()
	}
	out, err := safeCall(hctx, h, c.input)
	if err == nil && !c.callback && hctx.Err() == context.DeadlineExceeded {
		err = &TaskError{Name: "States.Timeout", Cause: "task timed out"}
	}
	if err != nil && hctx.Err() == context.DeadlineExceeded && !c.callback {
		err = &TaskError{Name: "States.Timeout", Cause: "task timed out"}
	}
	unlock := r.lock(c.exec)
	defer unlock()
	rec, gerr := r.store.Get(ctx, c.exec)
	if gerr != nil {
		r.log.ErrorContext(ctx, "asl load execution", "execution", c.exec, "err", gerr)
		return
	}
	f := findFrame(rec, c.frame)
	if rec.Status != Running || f == nil || f.Run != c.run {
		return // stopped, or moved on (a callback answered before the handler returned)
	}
	if c.callback {
		if err == nil || f.Wait != waitToken || f.Token != c.token {
			return // the token is now awaited (or was already answered)
		}
	} else if f.Wait != waitTask {
		return
	}
	name, cause := "", ""
	if err != nil {
		name, cause = taskErrorOf(err)
		rec.History = append(rec.History, Event{Type: "TaskFailed", StateName: c.state.Name, Time: r.clock.Now().UTC(), Error: name, Cause: cause})
		r.handleError(rec, f, c.state, name, cause)
	} else {
		if len(out) == 0 {
			out = json.RawMessage("null")
		}
		result, derr := decode(out)
		if derr != nil {
			rec.History = append(rec.History, Event{Type: "TaskFailed", StateName: c.state.Name, Time: r.clock.Now().UTC(), Error: "States.TaskFailed", Cause: "handler output is not JSON"})
			r.handleError(rec, f, c.state, "States.TaskFailed", "handler output is not JSON")
		} else {
			if c.state.FunctionName != "" {
				result = map[string]any{"Payload": result, "StatusCode": json.Number("200"), "ExecutedVersion": "$LATEST"}
			}
			r.taskSucceeded(rec, f, c.state, result)
		}
	}
	if err := r.save(ctx, rec); err != nil {
		r.log.ErrorContext(ctx, "asl save execution", "execution", c.exec, "err", err)
	}
}

func (r *Runner) taskSucceeded(rec *Record, f *Frame, st *State, result any) {
	rec.event("TaskSucceeded", st.Name, r.clock.Now().UTC())
	f.Wait, f.Token, f.Timers, f.Attempts, f.Heartbeat = waitNone, "", nil, nil, 0
	raw, _ := decode(f.Input)
	r.finishState(rec, f, st, raw, result, r.contextObject(rec, f, ""))
}

func taskErrorOf(err error) (string, string) {
	var te *TaskError
	if errors.As(err, &te) {
		return te.Name, te.Cause
	}
	// The cause of an unnamed failure is the handler's message, as Lambda
	// reports it; handlers must not put secrets in errors (package rule).
	return "States.TaskFailed", err.Error()
}

func safeCall(ctx context.Context, h Handler, in json.RawMessage) (out json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &TaskError{Name: "States.TaskFailed", Cause: "handler panicked"}
		}
	}()
	return h(ctx, in)
}

// tokenFrame loads the execution awaiting token and returns it locked.
func (r *Runner) tokenFrame(ctx context.Context, token string) (*Record, *Frame, func(), error) {
	t, err := r.store.LookupToken(ctx, token)
	if err != nil {
		return nil, nil, nil, escrow.Wrap(escrow.CodeNotFound, err, "task token not found")
	}
	unlock := r.lock(t.ExecutionID)
	rec, err := r.store.Get(ctx, t.ExecutionID)
	if err != nil {
		unlock()
		return nil, nil, nil, fmt.Errorf("load execution: %w", err)
	}
	f := findFrame(rec, t.Frame)
	if rec.Status != Running || f == nil || f.Wait != waitToken || f.Token != token {
		unlock()
		return nil, nil, nil, escrow.Errorf(escrow.CodeNotFound, "task token not found")
	}
	return rec, f, unlock, nil
}

// SendTaskSuccess completes the callback task waiting for token with
// output. Returns escrow.ErrNotFound for an unknown or no longer awaited
// token and escrow.ErrInvalid when output is not JSON.
func (r *Runner) SendTaskSuccess(ctx context.Context, token string, output json.RawMessage) error {
	result, err := decode(output)
	if err != nil || len(output) == 0 {
		return escrow.Errorf(escrow.CodeInvalid, "task output is not JSON")
	}
	rec, f, unlock, err := r.tokenFrame(ctx, token)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := r.stateOf(rec, f)
	if err != nil {
		return fmt.Errorf("send task success: %w", err)
	}
	r.taskSucceeded(rec, f, st, result)
	if err := r.save(ctx, rec); err != nil {
		return fmt.Errorf("send task success: %w", err)
	}
	r.kick(ctx, rec.ID)
	return nil
}

// SendTaskFailure fails the callback task waiting for token with a named
// error (matched by Retry and Catch). Errors as SendTaskSuccess.
func (r *Runner) SendTaskFailure(ctx context.Context, token, errName, cause string) error {
	rec, f, unlock, err := r.tokenFrame(ctx, token)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := r.stateOf(rec, f)
	if err != nil {
		return fmt.Errorf("send task failure: %w", err)
	}
	rec.History = append(rec.History, Event{Type: "TaskFailed", StateName: st.Name, Time: r.clock.Now().UTC(), Error: errName, Cause: cause})
	r.handleError(rec, f, st, errName, cause)
	if err := r.save(ctx, rec); err != nil {
		return fmt.Errorf("send task failure: %w", err)
	}
	r.kick(ctx, rec.ID)
	return nil
}

// SendTaskHeartbeat restarts the HeartbeatSeconds clock of the callback
// task waiting for token. Errors as SendTaskSuccess.
func (r *Runner) SendTaskHeartbeat(ctx context.Context, token string) error {
	rec, f, unlock, err := r.tokenFrame(ctx, token)
	if err != nil {
		return err
	}
	defer unlock()
	if f.Heartbeat == 0 {
		return nil
	}
	for i := range f.Timers {
		if f.Timers[i].Kind == TimerHeartbeat {
			f.Timers[i].Due = r.clock.Now().UTC().Add(time.Duration(f.Heartbeat) * time.Second)
		}
	}
	if err := r.save(ctx, rec); err != nil {
		return fmt.Errorf("send task heartbeat: %w", err)
	}
	return nil
}

// Stop aborts a running execution. Returns escrow.ErrNotFound for an
// unknown execution and escrow.ErrConflict if it is not running.
func (r *Runner) Stop(ctx context.Context, executionID, cause string) error {
	unlock := r.lock(executionID)
	defer unlock()
	rec, err := r.store.Get(ctx, executionID)
	if err != nil {
		return fmt.Errorf("stop execution: %w", err)
	}
	if rec.Status != Running {
		return escrow.Errorf(escrow.CodeConflict, "execution is %s, not running", rec.Status)
	}
	now := r.clock.Now().UTC()
	rec.Status, rec.Cause, rec.StopTime, rec.Frames = Aborted, cause, now, nil
	rec.History = append(rec.History, Event{Type: "ExecutionAborted", Time: now, Cause: cause})
	if err := r.save(ctx, rec); err != nil {
		return fmt.Errorf("stop execution: %w", err)
	}
	return nil
}

// Execution describes an execution.
type Execution struct {
	ID        string
	Machine   string
	Name      string
	Status    Status
	Input     json.RawMessage
	Output    json.RawMessage // set when Succeeded
	Error     string          // set when Failed
	Cause     string
	StartTime time.Time
	StopTime  time.Time
	History   []Event
}

// Describe returns an execution. Returns escrow.ErrNotFound if unknown.
func (r *Runner) Describe(ctx context.Context, executionID string) (*Execution, error) {
	rec, err := r.store.Get(ctx, executionID)
	if err != nil {
		return nil, fmt.Errorf("describe execution: %w", err)
	}
	return &Execution{
		ID: rec.ID, Machine: rec.Machine, Name: rec.Name, Status: rec.Status,
		Input: rec.Input, Output: rec.Output, Error: rec.Error, Cause: rec.Cause,
		StartTime: rec.StartTime, StopTime: rec.StopTime, History: rec.History,
	}, nil
}

// Tick fires every timer due by the clock: Wait states end, Retry
// intervals end, callback tasks time out. Run calls it on a ticker; tests
// call it after moving their clock.
func (r *Runner) Tick(ctx context.Context) error {
	for {
		due, err := r.store.DueTimers(ctx, r.clock.Now().UTC(), 100)
		if err != nil {
			return fmt.Errorf("due timers: %w", err)
		}
		fired := 0
		for _, t := range due {
			ok, err := r.fire(ctx, t)
			if err != nil {
				return err
			}
			if ok {
				fired++
			}
		}
		if len(due) < 100 || fired == 0 {
			return nil
		}
	}
}

func (r *Runner) fire(ctx context.Context, t Timer) (bool, error) {
	unlock := r.lock(t.ExecutionID)
	defer unlock()
	rec, err := r.store.Get(ctx, t.ExecutionID)
	if err != nil {
		return false, fmt.Errorf("fire timer: %w", err)
	}
	f := findFrame(rec, t.Frame)
	if rec.Status != Running || f == nil {
		return false, nil
	}
	found := false
	for _, ft := range f.Timers {
		if ft.Kind == t.Kind && ft.Due.Equal(t.Due) {
			found = true
		}
	}
	if !found {
		return false, nil // already handled
	}
	st, err := r.stateOf(rec, f)
	if err != nil {
		r.failExecution(rec, "States.Runtime", err.Error())
	} else {
		switch t.Kind {
		case TimerWait:
			f.Wait, f.Timers = waitNone, nil
			raw, _ := decode(f.Input)
			ctxObj := r.contextObject(rec, f, "")
			in, err := inputPath(st, raw, ctxObj)
			var out any
			if err == nil {
				out, err = outputPath(st, in, ctxObj)
			}
			if err != nil {
				r.fail(rec, f, st, err)
			} else {
				r.transition(rec, f, st, out)
			}
		case TimerRetry:
			f.Wait, f.Timers = waitNone, nil
		case TimerTimeout, TimerHeartbeat:
			name := "States.Timeout"
			if t.Kind == TimerHeartbeat {
				name = "States.HeartbeatTimeout"
			}
			rec.History = append(rec.History, Event{Type: "TaskTimedOut", StateName: st.Name, Time: r.clock.Now().UTC(), Error: name})
			r.handleError(rec, f, st, name, "")
		}
	}
	if err := r.save(ctx, rec); err != nil {
		return false, fmt.Errorf("fire timer: %w", err)
	}
	r.kick(ctx, rec.ID)
	return true, nil
}

// Run resumes every persisted running execution (re-running tasks that
// were in flight when the previous process stopped: at-least-once, as in
// Step Functions), then fires due timers every TickInterval until ctx
// ends. It returns nil when ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.Resume(ctx); err != nil {
		return err
	}
	t := time.NewTicker(r.tick)
	defer t.Stop()
	for {
		if err := r.Tick(ctx); err != nil && ctx.Err() == nil {
			r.log.ErrorContext(ctx, "asl tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Resume restarts every running execution's runnable frames, including
// handler calls a previous process left in flight. Run calls it first.
func (r *Runner) Resume(ctx context.Context) error {
	ids, err := r.store.Running(ctx)
	if err != nil {
		return fmt.Errorf("list running executions: %w", err)
	}
	for _, id := range ids {
		if err := r.resume(ctx, id); err != nil {
			return err
		}
		r.kick(ctx, id)
	}
	return nil
}

func (r *Runner) resume(ctx context.Context, id string) error {
	unlock := r.lock(id)
	defer unlock()
	rec, err := r.store.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("resume execution: %w", err)
	}
	changed := false
	r.mu.Lock()
	for i := range rec.Frames {
		f := &rec.Frames[i]
		if f.Wait == waitTask && !r.inflight[inflightKey(id, f.ID)] {
			f.Wait = waitNone
			changed = true
		}
	}
	r.mu.Unlock()
	if !changed {
		return nil
	}
	if err := r.save(ctx, rec); err != nil {
		return fmt.Errorf("resume execution: %w", err)
	}
	return nil
}
