package siem

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// EventVersion is the version of the JSON event envelope. It changes only
// when a field is removed or changes meaning; new fields may be added to
// the envelope (and to the record) within a version.
const EventVersion = "1"

// EventSource is the envelope's "source".
const EventSource = "escrow"

// Event is the JSON envelope of one audit record (see the package doc).
type Event struct {
	Version  string              `json:"version"`
	Source   string              `json:"source"`
	Type     string              `json:"type"` // the record's action
	ID       string              `json:"id"`   // the record's id: the key to deduplicate on
	Time     time.Time           `json:"time"` // the record's time, in UTC
	Outcome  escrow.Outcome      `json:"outcome"`
	Severity int                 `json:"severity"` // 0-10, as in CEF
	Record   *escrow.AuditRecord `json:"record"`
}

// NewEvent wraps r in the envelope. r must not be nil; the event shares r.
func NewEvent(r *escrow.AuditRecord) Event {
	return Event{
		Version:  EventVersion,
		Source:   EventSource,
		Type:     r.Action,
		ID:       r.ID,
		Time:     r.Time.UTC(),
		Outcome:  r.Outcome,
		Severity: Severity(r),
		Record:   r,
	}
}

// MarshalEvent returns r's event as one line of JSON, without a trailing
// newline. Strings that are not valid UTF-8 are repaired with U+FFFD, and
// control characters are escaped, so the result never holds a raw newline.
// Returns an error wrapping escrow.ErrInvalid if r is nil or its time
// cannot be written (a year outside 0-9999).
func MarshalEvent(r *escrow.AuditRecord) ([]byte, error) {
	if r == nil {
		return nil, escrow.Errorf(escrow.CodeInvalid, "audit record is nil")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// SIEM users search for what was sent ("<script>"), not for \u003c.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(NewEvent(r)); err != nil {
		return nil, escrow.Wrap(escrow.CodeInvalid, fmt.Errorf("marshal audit event %s: %w", r.ID, err), "audit record cannot be exported")
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Severity levels (CEF's 0-10 scale). See the package doc for the table.
const (
	SeverityRoutine         = 1  // a successful routine action
	SeveritySensitive       = 3  // a successful sensitive action
	SeverityFailed          = 5  // an action that failed
	SeverityDenied          = 7  // an action authorization refused
	SeverityDeniedSensitive = 8  // a sensitive action authorization refused
	SeverityRotationFailure = 10 // a rotation that failed: the secret stays locked
)

// sensitive are the actions that reveal a value, hand out exclusive use,
// or change who may do what.
var sensitive = map[string]bool{
	escrow.ActionSecretReveal:   true,
	escrow.ActionCheckout:       true,
	escrow.ActionForceCheckin:   true,
	escrow.ActionPrivilegedRead: true,
	escrow.ActionRotateNow:      true,
	escrow.ActionSecretDelete:   true,
	escrow.ActionSecretACL:      true,
	escrow.ActionFolderACL:      true,
	escrow.ActionPolicySet:      true,
	escrow.ActionQLockRevoke:    true,
}

// rotationPrefix starts every rotation action.
const rotationPrefix = "secret.rotation."

// Severity returns r's severity on CEF's 0-10 scale: a rotation failure is
// the highest (the secret stays locked and someone must act), then denials
// (higher for sensitive actions), then failures, then sensitive successes,
// then routine ones. An unknown outcome counts as a failure.
func Severity(r *escrow.AuditRecord) int {
	switch {
	case r.Action == escrow.ActionRotationFailed,
		strings.HasPrefix(r.Action, rotationPrefix) && r.Outcome == escrow.OutcomeFailed:
		return SeverityRotationFailure
	case r.Outcome == escrow.OutcomeDenied && sensitive[r.Action]:
		return SeverityDeniedSensitive
	case r.Outcome == escrow.OutcomeDenied:
		return SeverityDenied
	case r.Outcome == escrow.OutcomeSuccess && sensitive[r.Action]:
		return SeveritySensitive
	case r.Outcome == escrow.OutcomeSuccess:
		return SeverityRoutine
	}
	return SeverityFailed
}

// names are the CEF event names of the known actions.
var names = map[string]string{
	escrow.ActionSecretCreate:   "Secret created",
	escrow.ActionSecretGet:      "Secret read",
	escrow.ActionSecretList:     "Secrets listed",
	escrow.ActionSecretUpdate:   "Secret updated",
	escrow.ActionSecretDelete:   "Secret deleted",
	escrow.ActionSecretReveal:   "Secret value revealed",
	escrow.ActionSecretVersions: "Secret versions listed",
	escrow.ActionSecretACL:      "Secret ACL set",
	escrow.ActionFolderGet:      "Folder read",
	escrow.ActionFolderACL:      "Folder ACL set",
	escrow.ActionAuditQuery:     "Audit log queried",
	escrow.ActionPolicyGet:      "Policy read",
	escrow.ActionPolicySet:      "Policy set",
	escrow.ActionAuthFailed:     "Authentication failed",

	escrow.ActionCheckout:            "Secret checked out",
	escrow.ActionCheckin:             "Secret checked in",
	escrow.ActionCheckoutExtend:      "Checkout extended",
	escrow.ActionForceCheckin:        "Secret force-checked-in",
	escrow.ActionCheckoutExpire:      "Checkout expired",
	escrow.ActionCheckoutRelease:     "Checkout released",
	escrow.ActionCheckoutStatus:      "Checkout status read",
	escrow.ActionHook:                "Checkout hook run",
	escrow.ActionRotationSet:         "Rotation configured",
	escrow.ActionRotationPending:     "Rotation: pending version created",
	escrow.ActionRotationSetOnTarget: "Rotation: set on target",
	escrow.ActionRotationTest:        "Rotation: tested on target",
	escrow.ActionRotationPromote:     "Rotation: new version promoted",
	escrow.ActionRotationFailed:      "Rotation failed",
	escrow.ActionRotateNow:           "Rotation requested",
	escrow.ActionPrivilegedRead:      "Privileged rotation credential read",

	escrow.ActionQLockKeyPut:  "QuantumLock key stored",
	escrow.ActionQLockKeyGet:  "QuantumLock key read",
	escrow.ActionQLockKeyList: "QuantumLock keys listed",
	escrow.ActionQLockLock:    "Secret QuantumLocked",
	escrow.ActionQLockShare:   "QuantumLocked secret shared",
	escrow.ActionQLockRevoke:  "QuantumLock access revoked",
	escrow.ActionQLockRelock:  "Secret QuantumLock relocked",
}

// Name returns the human-readable name of action (CEF's Name field): a
// fixed phrase for a known action, else the action itself.
func Name(action string) string {
	if n, ok := names[action]; ok {
		return n
	}
	return action
}

// ProductVersion is the Device Version that CEFLines and OpenFile write:
// the main module's version from the build info, or "dev" for a build
// without one (go run, go test, a source tree build).
func ProductVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
