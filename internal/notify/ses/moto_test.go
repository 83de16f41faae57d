package ses_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/notify"
	"github.com/escrow-pam/escrow/internal/notify/notifytest"
	"github.com/escrow-pam/escrow/internal/notify/ses"
)

const (
	sender    = "escrow@example.com"
	configSet = "escrow-mail"
)

// motoData is the part of GET /moto-api/data.json that holds mail: SESv2
// sends through moto's SES v1 backend, which records Simple content under
// "ses" / "Message" and Raw content under "ses" / "RawMessage". For Simple
// content moto keeps one body: the HTML part if there is one, else the
// text. For Raw content it keeps the MIME message as sent, and its
// destinations are the Destination's addresses followed by the To header's.
type motoData struct {
	SES struct {
		RawMessage []struct {
			ID           string   `json:"id"`
			Source       string   `json:"source"`
			Destinations []string `json:"destinations"`
			RawData      string   `json:"raw_data"`
		} `json:"RawMessage"`
		Message []struct {
			ID           string `json:"id"`
			Source       string `json:"source"`
			Subject      string `json:"subject"`
			Body         string `json:"body"`
			Destinations struct {
				ToAddresses  []string `json:"ToAddresses"`
				CcAddresses  []string `json:"CcAddresses"`
				BccAddresses []string `json:"BccAddresses"`
			} `json:"destinations"`
		} `json:"Message"`
	} `json:"ses"`
}

// sentMail reads back every message moto has accepted, as notifytest.Run
// wants it (the one body as Text), and checks each came from the sender
// and went to To only.
func sentMail(t *testing.T, m *awstest.Moto) []notify.Message {
	t.Helper()
	resp, err := http.Get(m.Endpoint + "/moto-api/data.json")
	if err != nil {
		t.Fatalf("get moto data: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get moto data: %s", resp.Status)
	}
	var data motoData
	if err := json.NewDecoder(resp.Body).Decode(&data); err != nil {
		t.Fatalf("decode moto data: %v", err)
	}
	var out []notify.Message
	for _, msg := range data.SES.Message {
		d := msg.Destinations
		if len(d.CcAddresses)+len(d.BccAddresses) != 0 {
			t.Fatalf("message %s has Cc %q, Bcc %q; want To only", msg.ID, d.CcAddresses, d.BccAddresses)
		}
		if !strings.Contains(msg.Source, sender) {
			t.Fatalf("message %s came from %q, want %q", msg.ID, msg.Source, sender)
		}
		out = append(out, notify.Message{To: d.ToAddresses, Subject: msg.Subject, Text: msg.Body})
	}
	for _, msg := range data.SES.RawMessage {
		if !strings.Contains(msg.Source, sender) {
			t.Fatalf("message %s came from %q, want %q", msg.ID, msg.Source, sender)
		}
		m := parseRaw(t, msg.RawData)
		// The envelope (Destination, then To as moto reads it again) is
		// exactly the To header.
		var envelope []string
		for _, d := range msg.Destinations {
			if !slices.Contains(envelope, d) {
				envelope = append(envelope, d)
			}
		}
		if got, want := addrSpecs(t, envelope), addrSpecs(t, m.To); !slices.Equal(got, want) {
			t.Fatalf("message %s went to %q, its To header says %q", msg.ID, got, want)
		}
		out = append(out, m)
	}
	return out
}

// parseRaw reads a MIME message as rawMessage writes it (see raw.go),
// strictly: anything else fails the test.
func parseRaw(t *testing.T, raw string) notify.Message {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("raw message: %v", err)
	}
	h := msg.Header
	for _, name := range []string{"Cc", "Bcc", "Reply-To"} {
		if v := h.Get(name); v != "" {
			t.Fatalf("raw message has %s %q", name, v)
		}
	}
	if from, err := h.AddressList("From"); err != nil || len(from) != 1 || from[0].Address != sender {
		t.Fatalf("raw message is from %q (%v), want %s", h.Get("From"), err, sender)
	}
	if h.Get("MIME-Version") != "1.0" || h.Get(ses.HeaderKind) == "" {
		t.Fatalf("raw message lacks MIME-Version or %s: %v", ses.HeaderKind, h)
	}
	to, err := h.AddressList("To")
	if err != nil {
		t.Fatalf("raw message To %q: %v", h.Get("To"), err)
	}
	var m notify.Message
	for _, a := range to {
		m.To = append(m.To, a.String())
	}
	if m.Subject, err = new(mime.WordDecoder).DecodeHeader(h.Get("Subject")); err != nil {
		t.Fatalf("raw message subject %q: %v", h.Get("Subject"), err)
	}
	mixed := multipartOf(t, h.Get("Content-Type"), "multipart/mixed", msg.Body)
	first, err := mixed.NextPart()
	if err != nil {
		t.Fatalf("raw message has no body: %v", err)
	}
	if ct := first.Header.Get("Content-Type"); strings.HasPrefix(ct, "multipart/") {
		alt := multipartOf(t, ct, "multipart/alternative", first)
		m.Text = body(t, nextPart(t, alt), "text/plain; charset=utf-8")
		m.HTML = body(t, nextPart(t, alt), "text/html; charset=utf-8")
		if _, err := alt.NextPart(); err != io.EOF {
			t.Fatalf("alternative part has more than text and HTML: %v", err)
		}
	} else {
		m.Text = body(t, first, "text/plain; charset=utf-8")
	}
	for {
		p, err := mixed.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("raw message: next part: %v", err)
		}
		disp, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		if err != nil || disp != "attachment" || params["filename"] == "" {
			t.Fatalf("part %v is not an attachment", p.Header)
		}
		m.Attachments = append(m.Attachments, notify.Attachment{
			Name: params["filename"], ContentType: p.Header.Get("Content-Type"), Data: base64Body(t, p),
		})
	}
	return m
}

func multipartOf(t *testing.T, contentType, want string, r io.Reader) *multipart.Reader {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != want || params["boundary"] == "" {
		t.Fatalf("content type %q, want %s with a boundary (%v)", contentType, want, err)
	}
	return multipart.NewReader(r, params["boundary"])
}

func nextPart(t *testing.T, r *multipart.Reader) *multipart.Part {
	t.Helper()
	p, err := r.NextPart()
	if err != nil {
		t.Fatalf("next part: %v", err)
	}
	return p
}

// body returns a text part of type contentType, with its CRLF line breaks
// back to the LF the message was given.
func body(t *testing.T, p *multipart.Part, contentType string) string {
	t.Helper()
	if ct := p.Header.Get("Content-Type"); ct != contentType {
		t.Fatalf("body is %q, want %q", ct, contentType)
	}
	if p.Header.Get("Content-Disposition") != "" {
		t.Fatalf("body has a disposition: %v", p.Header)
	}
	return strings.ReplaceAll(string(base64Body(t, p)), "\r\n", "\n")
}

func base64Body(t *testing.T, p *multipart.Part) []byte {
	t.Helper()
	if cte := p.Header.Get("Content-Transfer-Encoding"); cte != "base64" {
		t.Fatalf("part is %q, want base64", cte)
	}
	data, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
	if err != nil {
		t.Fatalf("decode part: %v", err)
	}
	return data
}

func addrSpecs(t *testing.T, list []string) []string {
	t.Helper()
	var out []string
	for _, s := range list {
		a, err := mail.ParseAddress(s)
		if err != nil {
			t.Fatalf("address %q: %v", s, err)
		}
		out = append(out, a.Address)
	}
	slices.Sort(out)
	return out
}

// newClient starts moto, verifies the sender (moto refuses mail from an
// unverified one, as SES does) and creates the configuration set.
func newClient(t *testing.T) (*awstest.Moto, *sesv2.Client) {
	t.Helper()
	m := awstest.Start(t)
	client := sesv2.NewFromConfig(m.MustConfig(t))
	ctx := context.Background()
	if _, err := client.CreateEmailIdentity(ctx, &sesv2.CreateEmailIdentityInput{EmailIdentity: aws.String(sender)}); err != nil {
		t.Fatalf("create email identity: %v", err)
	}
	if _, err := client.CreateConfigurationSet(ctx, &sesv2.CreateConfigurationSetInput{ConfigurationSetName: aws.String(configSet)}); err != nil {
		t.Fatalf("create configuration set: %v", err)
	}
	return m, client
}

func TestMoto(t *testing.T) {
	m, client := newClient(t)
	n := ses.New(client, "Escrow <"+sender+">", configSet)
	notifytest.Run(t, n, func(t *testing.T) []notify.Message { return sentMail(t, m) })

	t.Run("UnverifiedSender", func(t *testing.T) {
		before := len(sentMail(t, m))
		n := ses.New(client, "someone@unverified.example", "")
		err := n.Send(context.Background(), message("From nobody"))
		if code := escrow.ErrorCode(err); code != escrow.CodeInternal {
			t.Fatalf("Send from an unverified sender = %v (code %q), want %q", err, code, escrow.CodeInternal)
		}
		if after := len(sentMail(t, m)); after != before {
			t.Fatalf("moto holds %d messages, had %d: the refused one was recorded", after, before)
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
	client := sesv2.NewFromConfig(m.MustConfig(t), func(o *sesv2.Options) {
		o.BaseEndpoint = aws.String("http://" + addr)
	})
	err = ses.New(client, sender, "").Send(context.Background(), message("Nowhere"))
	if !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("Send to a closed port = %v, want ErrUnavailable", err)
	}
}

func message(subject string) notify.Message {
	now := time.Now()
	return notify.Message{
		ID:      escrow.NewID(now),
		To:      []string{"bob@example.com"},
		Subject: subject,
		Text:    "hello",
		Kind:    "approval.request",
		Time:    now,
	}
}
