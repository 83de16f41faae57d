// Package ses implements notify.Notifier with Amazon SES (API v2): each
// message goes out as one SendEmail call from one verified sender, tagged
// with its kind and id for the configuration set's event destinations. A
// message without attachments is Simple content (UTF-8 text, and HTML when
// set); one with attachments is Raw content, a MIME message this package
// writes (see raw.go for its layout).
//
// It must never log or put a message body or attachment in an error
// (bodies hold approval links, attachments compliance reports), and never
// send a message notify.Validate refuses: the checks that stop header
// injection run before anything reaches SES.
package ses

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/notify"
)

// API is the subset of *sesv2.Client that SES uses.
type API interface {
	SendEmail(ctx context.Context, params *sesv2.SendEmailInput, optFns ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error)
}

var _ API = (*sesv2.Client)(nil)

// Header and tag names that carry a message's kind and id.
const (
	HeaderKind = "X-Escrow-Kind"
	HeaderRef  = "X-Escrow-Ref"
	TagKind    = "escrow-kind"
	TagID      = "escrow-id"
)

const charset = "UTF-8"

// SES sends mail through Amazon SES. It is safe for concurrent use.
type SES struct {
	client           API
	from             string
	sender           *mail.Address // from, parsed
	fromErr          error
	configurationSet string
	// boundary, if set, returns the MIME boundaries of raw messages (for
	// known-answer tests); else they are random.
	boundary func() string
}

var _ notify.Notifier = (*SES)(nil)

// New returns an SES notifier that sends from the verified identity from
// ("escrow@example.com" or "Escrow <escrow@example.com>") through client,
// with the configuration set configurationSet (none if empty).
func New(client API, from string, configurationSet string) *SES {
	s := &SES{client: client, from: from, configurationSet: configurationSet}
	// A bad sender is a deployment error: every Send reports it, as
	// CodeInternal, rather than letting SES call it a bad request.
	if a, err := mail.ParseAddress(from); err != nil || strings.ContainsAny(from, "\r\n") {
		s.fromErr = fmt.Errorf("ses: sender %q is not an email address", from)
	} else {
		s.from, s.sender = formatAddress(a), a
	}
	return s
}

// Send sends m with SendEmail. Returns an error wrapping escrow.ErrInvalid
// for a message notify.Validate refuses or SES calls malformed,
// escrow.ErrUnavailable when SES cannot take mail now (throttled, quota,
// sending paused, account suspended, the network, a 5xx), and CodeInternal
// for a misconfiguration (sender or MAIL FROM domain not verified, missing
// configuration set, no permission). SES has no idempotency key: a retried
// Send may deliver m twice.
func (s *SES) Send(ctx context.Context, m notify.Message) error {
	if err := notify.Validate(m); err != nil {
		return err
	}
	if s.fromErr != nil {
		return escrow.Wrap(escrow.CodeInternal, s.fromErr, "mail sender misconfigured")
	}
	in, err := s.input(m)
	if err != nil {
		return escrow.Wrap(escrow.CodeInternal, err, "encode message")
	}
	if _, err := s.client.SendEmail(ctx, in); err != nil {
		return convertError(fmt.Errorf("ses send email: %w", err))
	}
	return nil
}

// input returns the SendEmail call for m: Simple content without
// attachments, Raw content with. Both carry the same sender, recipients,
// kind and ref headers, tags and configuration set.
func (s *SES) input(m notify.Message) (*sesv2.SendEmailInput, error) {
	addrs := make([]*mail.Address, len(m.To))
	to := make([]string, len(m.To))
	for i, r := range m.To {
		addrs[i], _ = mail.ParseAddress(r) // Validate parsed it already
		to[i] = formatAddress(addrs[i])
	}
	var content *types.EmailContent
	if len(m.Attachments) == 0 {
		body := &types.Body{Text: &types.Content{Data: aws.String(m.Text), Charset: aws.String(charset)}}
		if m.HTML != "" {
			body.Html = &types.Content{Data: aws.String(m.HTML), Charset: aws.String(charset)}
		}
		headers := []types.MessageHeader{{Name: aws.String(HeaderKind), Value: aws.String(m.Kind)}}
		if m.Ref != "" {
			headers = append(headers, types.MessageHeader{Name: aws.String(HeaderRef), Value: aws.String(m.Ref)})
		}
		content = &types.EmailContent{Simple: &types.Message{
			Subject: &types.Content{Data: aws.String(m.Subject), Charset: aws.String(charset)},
			Body:    body,
			Headers: headers,
		}}
	} else {
		raw, err := s.rawMessage(m, addrs)
		if err != nil {
			return nil, err
		}
		content = &types.EmailContent{Raw: &types.RawMessage{Data: raw}}
	}
	in := &sesv2.SendEmailInput{
		FromEmailAddress: aws.String(s.from),
		// For Raw content too: the envelope is exactly To, whatever
		// the headers say.
		Destination: &types.Destination{ToAddresses: to},
		Content:     content,
		EmailTags: []types.MessageTag{
			// Tag values allow no '.', which kinds use ("approval.request").
			{Name: aws.String(TagKind), Value: aws.String(strings.ReplaceAll(m.Kind, ".", "_"))},
			{Name: aws.String(TagID), Value: aws.String(m.ID)},
		},
	}
	if s.configurationSet != "" {
		in.ConfigurationSetName = aws.String(s.configurationSet)
	}
	return in, nil
}

// formatAddress keeps a bare address bare and encodes a display name as
// RFC 2047 asks (SES refuses raw non-ASCII in address headers).
func formatAddress(a *mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	return a.String()
}

// convertError is the one place where SES errors become escrow errors:
//   - what may pass (throttling, the sending quota, sending paused, the
//     account suspended or under review, SES's own failures, any 5xx or
//     429, and no answer at all) is ErrUnavailable: retry later;
//   - a request SES calls malformed (BadRequestException) is ErrInvalid:
//     the message, not the deployment, is at fault, and resending it will
//     not help;
//   - the rest is a misconfiguration, CodeInternal: MessageRejected (in
//     practice an unverified sender, or a recipient outside the sandbox:
//     Validate has already checked the content), MAIL FROM domain not
//     verified, an unknown configuration set, access denied, and
//     parameters the SDK itself refused.
func convertError(err error) error {
	if err == nil {
		return nil
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException",
			"SendingPausedException", "AccountSuspendedException",
			"InternalServiceErrorException", "InternalFailure", "ServiceUnavailable":
			return escrow.Wrap(escrow.CodeUnavailable, err, "mail service unavailable")
		case "BadRequestException":
			return escrow.Wrap(escrow.CodeInvalid, err, "mail refused as malformed")
		case "MessageRejected", "MailFromDomainNotVerifiedException", "NotFoundException":
			return escrow.Wrap(escrow.CodeInternal, err, "mail service misconfigured")
		}
		var respErr interface{ HTTPStatusCode() int }
		if errors.As(err, &respErr) && (respErr.HTTPStatusCode() >= 500 || respErr.HTTPStatusCode() == 429) {
			return escrow.Wrap(escrow.CodeUnavailable, err, "mail service unavailable")
		}
		return escrow.Wrap(escrow.CodeInternal, err, "mail service error")
	}
	var paramErr smithy.InvalidParamsError
	if errors.As(err, &paramErr) {
		return escrow.Wrap(escrow.CodeInternal, err, "mail service error")
	}
	// No answer from SES at all: the network, a timeout, a cancelled
	// context, credentials that could not be fetched. All may pass.
	return escrow.Wrap(escrow.CodeUnavailable, err, "mail service unavailable")
}
