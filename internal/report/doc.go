// Package report answers auditors' questions — who accessed what, when,
// why, and who approved it — as compliance reports streamed in CSV or JSON.
//
// It depends only on the ports of package escrow (AuditLog, RequestStore,
// Store). Every report reads indexes: the audit log by actor, secret,
// ticket or action with a time range, requests by creation time, open
// grants by their sparse index. It must never scan a table, never hold a
// whole range in memory (rows are written as pages arrive, at most about
// two pages per index read at once), and never run for anyone but an admin
// or an auditor. Every run, refused or not, writes one audit record
// (report.run, with the report and its parameters) before any row, and a
// run whose record cannot be written returns nothing (fail closed).
//
// Audit-based reports list records newest first, the order of the indexes.
// Times are UTC to the millisecond. Columns are the same in every format:
// CSV (a header row, then RFC 4180 records; a cell starting with = + - @,
// a tab or a carriage return is prefixed with ' so a spreadsheet does not
// run it), a JSON array of objects, or JSON lines. Structured cells (a
// request's steps and decisions) are JSON values in JSON and flat text in
// CSV; empty times and numbers are null in JSON.
//
// # The audit columns
//
// access-by-user, access-to-secret, ticket, denied and activity share
// these columns: time, auditId, actor, action, outcome (success, denied,
// failed), secret (id), path (as recorded, else the secret's current
// path), ticket, comment (the actor's reason), request and grant (the
// access request and grant the action was under or about), reason (why it
// was denied or failed: "code: message"), sourceIp and httpRequest (the
// API request id that error messages quote).
//
// # access-by-user (user, from, to)
//
// Everything one user (by subject) did or tried, from the actor index,
// with the audit columns.
//
// # access-to-secret (secret, from, to)
//
// Everything done or tried on one secret (by id or /path), from the secret
// index, with the audit columns.
//
// # ticket (ticket, from, to)
//
// Everything done under one change or incident number, from the ticket
// index, with the audit columns: the request naming it, its approvals,
// checkouts and reveals.
//
// # requests (from, to)
//
// Access requests created in the range, newest first, from the index of
// all requests by creation time. Columns: created, request, requester,
// requesterEmail, secret, path, access, start and end (the requested
// window), status, ticket, comment, steps (each approval step: its
// approvers and quorum), decisions (each decision with its step, approver,
// approve or deny, time and comment), approvedBy, decidedAt,
// timeToApproveSeconds (the last approval minus the creation, for granted
// requests), grant, grantStart, grantEnd and cancelledBy.
//
// # grants
//
// Grants in force now or starting later, from the open-grants index,
// newest first. A grant past its end is left out even if nothing has
// marked it expired: it authorizes nothing. Columns: grant, request,
// subject, secret, path, access, status (active or upcoming), start, end,
// startsInSeconds (upcoming only), timeLeftSeconds, ticket and created.
//
// # checkouts (from, to)
//
// The checkout and rotation trail, merged from the action index of each
// of secret.checkout, secret.checkin, secret.checkout.extend, .force,
// .expire, .release, .hook and every secret.rotation.* action (status
// reads are left out). Columns: time, auditId, event (checkout, checkin,
// extend, force-checkin, expire, release, hook, rotation-config,
// rotation-pending, rotation-set-on-target, rotation-test,
// rotation-promote, rotation-failed, rotate-now, privileged-read), action,
// actor, outcome, failed (true for a refusal, a failure or a failed
// rotation, which leaves the secret locked), secret, path, checkout,
// holder, ticket, comment, expires, version and reason.
//
// # sod-exceptions (from, to)
//
// Separation-of-duty exceptions; in a healthy system the report is empty.
// First, newest first, from the action indexes: forced check-ins and
// rotate-now by admins (not by the workflow), and revocations by admins of
// someone else's grant. Then the decisions a requester made on their own
// request (the domain refuses them; they are looked for anyway) among
// requests created in the range. Columns: time, kind (force-checkin,
// rotate-now, grant-revoke, self-approval, self-denial), actor,
// actorRoles, affected (whose checkout, grant or request), secret, path,
// request, grant, checkout, ticket, comment, detail and auditId.
//
// # denied (from, to)
//
// Denied and failed attempts, with the audit columns: the action index of
// every action a caller can attempt, merged newest first, keeping the
// records whose outcome is denied or failed.
//
// # activity (from, to)
//
// The whole trail of the range, with the audit columns: an export for
// archives and SIEMs, read by time (the audit log's id order on SQLite,
// its day partitions on DynamoDB).
package report
