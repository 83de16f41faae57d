package eventbridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	eb "github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/siem"
	"github.com/escrow-pam/escrow/internal/siem/eventbridge"
	"github.com/escrow-pam/escrow/internal/siem/siemtest"
)

// countingAPI counts the PutEvents calls that reach moto, and their
// entries and answers.
type countingAPI struct {
	eventbridge.API
	mu      sync.Mutex
	entries []int // per call
	failed  int   // FailedEntryCount, summed
	ids     int   // event ids returned
}

func (c *countingAPI) PutEvents(ctx context.Context, in *eb.PutEventsInput, opts ...func(*eb.Options)) (*eb.PutEventsOutput, error) {
	out, err := c.API.PutEvents(ctx, in, opts...)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = append(c.entries, len(in.Entries))
	if err == nil {
		c.failed += int(out.FailedEntryCount)
		for _, e := range out.Entries {
			if aws.ToString(e.EventId) != "" {
				c.ids++
			}
		}
	}
	return out, err
}

// archivedEvent is an event as moto's archive keeps it (GET
// /moto-api/data.json, "events" / "Archive" / "events").
type archivedEvent struct {
	ID         string          `json:"id"`
	Source     string          `json:"source"`
	DetailType string          `json:"detail-type"`
	Time       float64         `json:"time"`
	Detail     json.RawMessage `json:"detail"`
}

// archived returns the events moto's archive named name holds.
func archived(t *testing.T, m *awstest.Moto, name string) []archivedEvent {
	t.Helper()
	resp, err := http.Get(m.Endpoint + "/moto-api/data.json")
	if err != nil {
		t.Fatalf("get moto data: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get moto data: %s", resp.Status)
	}
	var data struct {
		Events struct {
			Archive []struct {
				Name   string          `json:"name"`
				Events []archivedEvent `json:"events"`
			} `json:"Archive"`
		} `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&data); err != nil {
		t.Fatalf("decode moto data: %v", err)
	}
	for _, a := range data.Events.Archive {
		if a.Name == name {
			return a.Events
		}
	}
	t.Fatalf("moto has no archive %q", name)
	return nil
}

// decode checks an archived event's envelope and returns its detail.
func decode(t *testing.T, a archivedEvent) siem.Event {
	t.Helper()
	var ev siem.Event
	if err := json.Unmarshal(a.Detail, &ev); err != nil {
		t.Fatalf("detail %s: %v", a.Detail, err)
	}
	if a.Source != eventbridge.Source || a.DetailType != ev.Type {
		t.Fatalf("event %s: source %q, detail type %q; want %q, %q", ev.ID, a.Source, a.DetailType, eventbridge.Source, ev.Type)
	}
	if want := float64(ev.Time.Unix()); a.Time != want {
		t.Fatalf("event %s: time %v, want the record's, %v", ev.ID, a.Time, want)
	}
	return ev
}

// newBus creates a bus and an archive of everything with Source
// escrow.audit on it (moto's archive is a rule with that pattern).
func newBus(t *testing.T, client *eb.Client, name string) {
	t.Helper()
	ctx := context.Background()
	bus, err := client.CreateEventBus(ctx, &eb.CreateEventBusInput{Name: aws.String(name)})
	if err != nil {
		t.Fatalf("create event bus: %v", err)
	}
	if _, err := client.CreateArchive(ctx, &eb.CreateArchiveInput{
		ArchiveName:    aws.String(name),
		EventSourceArn: bus.EventBusArn,
		EventPattern:   aws.String(`{"source":["escrow.audit"]}`),
	}); err != nil {
		t.Fatalf("create archive: %v", err)
	}
}

func TestMoto(t *testing.T) {
	m := awstest.Start(t)
	client := eb.NewFromConfig(m.MustConfig(t))
	ctx := context.Background()

	t.Run("Batches", func(t *testing.T) {
		newBus(t, client, "escrow-audit")
		api := &countingAPI{API: client}
		sink := eventbridge.New(api, eventbridge.Options{EventBus: "escrow-audit"})
		start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
		var recs []*escrow.AuditRecord
		for i := range 25 {
			r := escrow.NewAuditRecord(ctx, start.Add(time.Duration(i)*time.Second), escrow.ActionSecretReveal, "secret:S1")
			r.Actor = escrow.Actor{Subject: fmt.Sprintf("user-%d", i)}
			r.SecretID, r.Comment = "S1", "ünïcode | a=b\nline 2"
			recs = append(recs, r)
		}
		recs[3].Action, recs[3].Outcome = escrow.ActionRotationFailed, escrow.OutcomeFailed
		if err := sink.Publish(ctx, recs); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if fmt.Sprint(api.entries) != "[10 10 5]" || api.failed != 0 || api.ids != 25 {
			t.Fatalf("PutEvents calls %v, %d failed entries, %d event ids; want [10 10 5], 0, 25", api.entries, api.failed, api.ids)
		}
		arch, err := client.DescribeArchive(ctx, &eb.DescribeArchiveInput{ArchiveName: aws.String("escrow-audit")})
		if err != nil {
			t.Fatalf("describe archive: %v", err)
		}
		if arch.EventCount != 25 {
			t.Fatalf("archive holds %d events, want 25", arch.EventCount)
		}
		got := map[string]siem.Event{}
		for _, a := range archived(t, m, "escrow-audit") {
			ev := decode(t, a)
			got[ev.ID] = ev
		}
		for _, r := range recs {
			ev, ok := got[r.ID]
			if !ok {
				t.Fatalf("record %s not in the archive", r.ID)
			}
			want := siem.NewEvent(r)
			if ev.Record.Comment != r.Comment || ev.Severity != want.Severity || ev.Type != r.Action || ev.Record.Actor.Subject != r.Actor.Subject {
				t.Fatalf("event %s = %+v, want %+v", r.ID, ev, want)
			}
		}
	})

	t.Run("Conformance", func(t *testing.T) {
		newBus(t, client, "escrow-audit-suite")
		sink := eventbridge.New(client, eventbridge.Options{EventBus: "escrow-audit-suite"})
		siemtest.Run(t, sink, func(t *testing.T) []siem.Event {
			var out []siem.Event
			for _, a := range archived(t, m, "escrow-audit-suite") {
				out = append(out, decode(t, a))
			}
			return out
		})
	})

	t.Run("LargeBatches", func(t *testing.T) {
		newBus(t, client, "escrow-audit-large")
		api := &countingAPI{API: client}
		sink := eventbridge.New(api, eventbridge.Options{EventBus: "escrow-audit-large"})
		var recs []*escrow.AuditRecord
		for i := range 5 {
			r := escrow.NewAuditRecord(ctx, time.Now(), escrow.ActionSecretUpdate, "secret:S1")
			r.Comment = fmt.Sprintf("%d %0100000d", i, 0) // about 100 KB each
			recs = append(recs, r)
		}
		if err := sink.Publish(ctx, recs); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if fmt.Sprint(api.entries) != "[2 2 1]" || api.ids != 5 {
			t.Fatalf("PutEvents calls %v, %d event ids; want [2 2 1], 5", api.entries, api.ids)
		}
		if n := len(archived(t, m, "escrow-audit-large")); n != 5 {
			t.Fatalf("archive holds %d events, want 5", n)
		}
	})

	t.Run("MissingBus", func(t *testing.T) {
		sink := eventbridge.New(client, eventbridge.Options{EventBus: "no-such-bus"})
		err := sink.Publish(ctx, []*escrow.AuditRecord{escrow.NewAuditRecord(ctx, time.Now(), escrow.ActionSecretGet, "secret:S1")})
		if code := escrow.ErrorCode(err); code != escrow.CodeInternal {
			t.Fatalf("Publish to a missing bus = %v (code %q), want %q", err, code, escrow.CodeInternal)
		}
	})
}

// TestUnreachable sends to a port nothing listens on: a real network
// failure, which must read as unavailable.
func TestUnreachable(t *testing.T) {
	m := awstest.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	client := eb.NewFromConfig(m.MustConfig(t), func(o *eb.Options) { o.BaseEndpoint = aws.String("http://" + addr) })
	err = eventbridge.New(client, eventbridge.Options{}).Publish(context.Background(),
		[]*escrow.AuditRecord{escrow.NewAuditRecord(context.Background(), time.Now(), escrow.ActionSecretGet, "")})
	if !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("Publish to a closed port = %v, want ErrUnavailable", err)
	}
}
