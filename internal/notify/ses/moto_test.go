package ses_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
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
// sends through moto's SES v1 backend, which records each message under
// "ses" / "Message". For Simple content moto keeps one body: the HTML part
// if there is one, else the text.
type motoData struct {
	SES struct {
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
