// Package siem exports the audit trail to SIEMs: each escrow.AuditRecord
// becomes a versioned JSON event, or a CEF line for syslog-based SIEMs,
// and a Sink publishes them (JSONLines, CEFLines, OpenFile here; EventBridge
// in siem/eventbridge). This comment is the integrator's reference.
//
// It must never emit anything but the fields of the record it is given:
// no lookups, no enrichment, no secret values (audit records never hold
// one: Details carries allow-listed facts such as field names, never
// values). The audit table stays the system of record; an export is a
// copy, delivered at least once.
//
// # JSON events
//
// One event per record, on one line (JSONLines adds "\n"; EventBridge
// carries it as the event's detail):
//
//	{"version":"1","source":"escrow","type":"secret.reveal",
//	 "id":"01JDX9V7M3Q8K2ZB4W6Y5T0R1S","time":"2026-11-22T10:00:00.123Z",
//	 "outcome":"denied","severity":8,
//	 "record":{"id":"01JDX9V7M3Q8K2ZB4W6Y5T0R1S","time":"2026-11-22T10:00:00.123Z",
//	   "actor":{"sub":"alice","email":"alice@example.com","groups":["dba","oncall"],"roles":["user"]},
//	   "action":"secret.reveal","secretId":"01JDX9V7M3Q8K2ZB4W6Y5T0R1T",
//	   "target":"secret:01JDX9V7M3Q8K2ZB4W6Y5T0R1T","outcome":"denied",
//	   "errorCode":"forbidden","reason":"forbidden","requestId":"req-1",
//	   "sourceIp":"192.0.2.7","userAgent":"escrow-cli/1.0",
//	   "comment":"INC-42 db down","ticket":"INC-42","details":{"field":"password"}}}
//
// (wrapped here; testdata/event.json holds it as written). The envelope:
//
//	version   "1" (EventVersion). Fields may be added within a version;
//	          a field removed or changing meaning makes a new version.
//	source    "escrow"
//	type      the record's action, e.g. "secret.reveal" (the escrow.Action* constants)
//	id        the record's id, a ULID: unique, time-ordered; deduplicate on it
//	time      the record's time, RFC 3339 in UTC
//	outcome   "success", "denied" (authorization refused) or "failed"
//	severity  0-10, as in CEF (below)
//	record    the audit record, exactly as the audit API returns it; empty
//	          fields are left out
//
// Strings that are not valid UTF-8 are repaired with U+FFFD; control
// characters are escaped, so an event never spans lines.
//
// # CEF
//
// One line per record, bare (no syslog header: the transport adds one):
//
//	CEF:0|Escrow|Escrow|<version>|<action>|<name>|<severity>|<extension>
//
//	CEF:0|Escrow|Escrow|v1.2.0|secret.reveal|Secret value revealed|8|rt=1795341600123
//	externalId=01JDX9V7M3Q8K2ZB4W6Y5T0R1S act=secret.reveal outcome=denied
//	reason=forbidden msg=forbidden suser=alice spriv=user src=192.0.2.7
//	requestClientApplication=escrow-cli/1.0 cs1=01JDX9V7M3Q8K2ZB4W6Y5T0R1T
//	cs1Label=secretId cs2=INC-42 cs2Label=ticket cs3=req-1 cs3Label=requestId
//	cs4=INC-42 db down cs4Label=comment cs5=alice@example.com cs5Label=actorEmail
//	cs6={"field":"password"} cs6Label=details flexString1=dba,oncall
//	flexString1Label=actorGroups flexString2=secret:01JDX9V7M3Q8K2ZB4W6Y5T0R1T
//	flexString2Label=target
//
// (wrapped here; testdata/event.cef holds it as written). The header:
//
//	version    Escrow's version (ProductVersion: the build's module version, or "dev")
//	action     the record's action: Device Event Class ID, stable per kind of event
//	name       a fixed phrase per action ("Secret value revealed"); the action itself if unknown
//	severity   0-10, below
//
// The extension, in this order; a key whose field is empty is left out,
// and so is its label:
//
//	rt                        time, milliseconds since the Unix epoch
//	externalId                id
//	act                       action
//	outcome                   outcome: success, denied, failed
//	reason                    errorCode (forbidden, not_found, invalid, ...)
//	msg                       reason (the client-safe message)
//	suser                     actor.sub
//	spriv                     actor.roles, joined with ","
//	src                       sourceIp, when it is an IP address (v4 or v6)
//	shost                     sourceIp, when it is not
//	requestClientApplication  userAgent
//	cs1  cs1Label=secretId    secretId
//	cs2  cs2Label=ticket      ticket
//	cs3  cs3Label=requestId   requestId
//	cs4  cs4Label=comment     comment
//	cs5  cs5Label=actorEmail  actor.email
//	cs6  cs6Label=details     details, as a JSON object with sorted keys
//	flexString1  flexString1Label=actorGroups  actor.groups, joined with ","
//	flexString2  flexString2Label=target       target ("secret:<id>", "folder:<path>", ...)
//
// CEF flattens lists (a group name holding "," reads as two): the JSON
// event is the lossless format.
//
// Escaping, per the CEF specification: in the header, \ becomes \\ and |
// becomes \|; a header may not span lines, so CR and LF become spaces
// (only the action, which Escrow sets, could hold one). In extension
// values, \ becomes \\, = becomes \=, LF becomes \n and CR becomes \r; |
// needs no escape there. CEF has no escape for other control characters:
// they (all of C0 but tab, DEL and C1) become U+FFFD, as does any byte
// that is not UTF-8, so a client-chosen value (a user agent) cannot cut a
// syslog line or send terminal escapes. Everything else, non-ASCII text
// included, is written as UTF-8. A CEF line therefore never holds CR or
// LF.
//
// # Severity
//
//	10  a rotation failure: secret.rotation.failed, or any secret.rotation.* that failed
//	 8  a sensitive action denied
//	 7  any other action denied (auth.failed included)
//	 5  an action that failed (or an unknown outcome)
//	 3  a sensitive action that succeeded
//	 1  any other action that succeeded
//
// The sensitive actions reveal a value, hand out exclusive use, or change
// who may do what: secret.reveal, secret.checkout, secret.checkout.force,
// secret.rotation.privileged, secret.rotation.now, secret.delete,
// secret.acl, folder.acl, policy.set, secret.qlock.revoke.
package siem
