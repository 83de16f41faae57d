package report

import (
	"container/heap"
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// source yields audit records newest first (by id, which is time order);
// nil means it is exhausted.
type source interface {
	next(ctx context.Context) (*escrow.AuditRecord, error)
}

// pages reads one indexed audit query page by page in a goroutine of its
// own, one page ahead of its reader: the next page is fetched while this
// one is written out, and at most two pages are held at once.
type pages struct {
	ch   chan pageResult
	recs []*escrow.AuditRecord
	i    int
	done bool
}

type pageResult struct {
	recs []*escrow.AuditRecord
	err  error
}

// stream starts reading q from log. The goroutine stops when ctx ends;
// wg waits for it.
func stream(ctx context.Context, wg *sync.WaitGroup, log escrow.AuditLog, q escrow.AuditQuery) *pages {
	p := &pages{ch: make(chan pageResult)}
	wg.Go(func() {
		defer close(p.ch)
		for {
			page, err := log.QueryAudit(ctx, q)
			if err != nil {
				err = internal("query audit", err)
			}
			select {
			case p.ch <- pageResult{page.Records, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || page.Next == "" {
				return
			}
			q.Cursor = page.Next
		}
	})
	return p
}

func (p *pages) next(ctx context.Context) (*escrow.AuditRecord, error) {
	for p.i >= len(p.recs) {
		if p.done {
			return nil, nil
		}
		var res pageResult
		var ok bool
		select {
		case res, ok = <-p.ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !ok {
			p.done, p.recs = true, nil
			// The reader also stops when ctx ends: that is no end of the
			// records, and must not pass for one.
			return nil, ctx.Err()
		}
		if res.err != nil {
			p.done = true
			return nil, res.err
		}
		p.recs, p.i = res.recs, 0
	}
	rec := p.recs[p.i]
	p.recs[p.i] = nil // let the page go as it is written
	p.i++
	return rec, nil
}

// merged yields the records of several sources newest first: a k-way
// merge on the record id, holding one record per source.
type merged struct {
	h       mergeHeap
	started bool
	srcs    []source
}

func merge(srcs ...source) *merged { return &merged{srcs: srcs} }

type headRec struct {
	rec *escrow.AuditRecord
	src source
}

type mergeHeap []headRec

func (h mergeHeap) Len() int           { return len(h) }
func (h mergeHeap) Less(i, j int) bool { return h[i].rec.ID > h[j].rec.ID }
func (h mergeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)        { *h = append(*h, x.(headRec)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (m *merged) next(ctx context.Context) (*escrow.AuditRecord, error) {
	if !m.started {
		m.started = true
		for _, s := range m.srcs {
			rec, err := s.next(ctx)
			if err != nil {
				return nil, err
			}
			if rec != nil {
				m.h = append(m.h, headRec{rec, s})
			}
		}
		heap.Init(&m.h)
	}
	if len(m.h) == 0 {
		return nil, nil
	}
	top := m.h[0]
	rec, err := top.src.next(ctx)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		heap.Pop(&m.h)
	} else {
		m.h[0].rec = rec
		heap.Fix(&m.h, 0)
	}
	return top.rec, nil
}

// records runs one report over src: each record that keep accepts (nil:
// all) becomes a row through row.
func (s *Service) records(ctx context.Context, r *run, src source, keep func(*escrow.AuditRecord) (bool, error), row func(*run, *escrow.AuditRecord) error) error {
	for {
		rec, err := src.next(ctx)
		if err != nil || rec == nil {
			return err
		}
		if keep != nil {
			ok, err := keep(rec)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		if err := row(r, rec); err != nil {
			return err
		}
		if err := r.emit(); err != nil {
			return err
		}
	}
}

// byActions reads the action index once per action over the run's range,
// merged newest first; each index gets a smaller page, as many are read
// at once.
func (s *Service) byActions(ctx context.Context, wg *sync.WaitGroup, r *run, actions []string) source {
	limit := max(s.pageSize/4, 1)
	srcs := make([]source, len(actions))
	for i, a := range actions {
		srcs[i] = stream(ctx, wg, s.log, escrow.AuditQuery{Action: a, From: r.params.From, To: r.params.To, Limit: limit})
	}
	return merge(srcs...)
}

// sliced reads one query over [from, to) as consecutive time windows,
// newest first, several at once: a single cursor can only be followed one
// page after another, but windows are independent queries, so the next
// windows are read (and decoded) while the current one is written out.
// Each window is read by a pages stream, so at most about ahead+1 pages
// are held. A window's width adapts to hold about one page.
type sliced struct {
	ctx      context.Context
	wg       *sync.WaitGroup
	log      escrow.AuditLog
	q        escrow.AuditQuery
	from     time.Time     // the range's start
	hi       time.Time     // the end of the next window to start
	width    time.Duration // of the next window
	ahead    int
	pageSize int
	open     []*window // started, oldest first; open[0] is being read
}

type window struct {
	p      *pages
	lo, hi time.Time
	n      int
}

// slice reads q over [from, to) in windows; from and to must be set.
func slice(ctx context.Context, wg *sync.WaitGroup, log escrow.AuditLog, q escrow.AuditQuery, from, to time.Time, pageSize int) *sliced {
	return &sliced{ctx: ctx, wg: wg, log: log, q: q, from: from, hi: to,
		width: max(to.Sub(from)/64, time.Second), ahead: max(3, runtime.GOMAXPROCS(0)+1), pageSize: pageSize}
}

func (s *sliced) next(ctx context.Context) (*escrow.AuditRecord, error) {
	for {
		for len(s.open) < s.ahead && s.hi.After(s.from) {
			// Inner bounds fall on whole milliseconds, the precision of
			// the ids that stores range over, so windows neither overlap
			// nor leave a gap.
			lo := s.hi.Add(-s.width).Truncate(time.Millisecond)
			if !lo.After(s.from) {
				lo = s.from
			}
			q := s.q
			q.From, q.To, q.Limit = lo, s.hi, s.pageSize
			s.open = append(s.open, &window{p: stream(s.ctx, s.wg, s.log, q), lo: lo, hi: s.hi})
			s.hi = lo
		}
		if len(s.open) == 0 {
			return nil, nil
		}
		w := s.open[0]
		rec, err := w.p.next(ctx)
		if err != nil || rec != nil {
			w.n++
			return rec, err
		}
		// Aim the next window at three quarters of a page (a window that
		// overflows costs a second query), moving by at most 8x a step.
		span := w.hi.Sub(w.lo)
		target := time.Duration(float64(span) * 0.75 * float64(s.pageSize) / float64(max(w.n, 1)))
		s.width = max(min(target, 8*span), span/8, time.Millisecond)
		s.open = s.open[1:]
	}
}
