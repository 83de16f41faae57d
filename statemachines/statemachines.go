// Package statemachines holds the one definition of each workflow, as
// Amazon States Language: template.yaml deploys them to Step Functions
// (DefinitionUri) and `escrow server -dev` runs the same files, embedded
// here, in the embedded runner (internal/asl).
package statemachines

import "embed"

// Files holds every *.asl.json of this folder.
//
//go:embed *.asl.json
var Files embed.FS

// AccessRequest is the name (and file stem) of the access-request machine.
const AccessRequest = "access-request"

// Checkout is the name (and file stem) of the checkout machine.
const Checkout = "checkout"

// RotateFunction is the name the -dev runner binds ${RotateFunctionArn}
// to: in -dev the same process rotates.
const RotateFunction = "escrow-rotate"

// TasksFunction is the name the -dev runner binds the definitions'
// ${TasksFunctionArn} to.
const TasksFunction = "escrow-tasks"
