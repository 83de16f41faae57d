// Package asl is an interpreter for Amazon States Language: the local
// stand-in for Step Functions that `escrow server -dev` uses to run the same
// statemachines/*.asl.json files AWS runs. Task resources are bound to Go
// handlers; executions, task tokens and timers persist in a Store so that a
// restarted server resumes waiting executions and fires overdue timers.
//
// It must never accept a definition it cannot run faithfully: anything
// outside the subset below is rejected by Parse (or by New, for an unbound
// resource) with the name of the offending state, never skipped at run
// time. It must never log state inputs, outputs or causes: they may carry
// secrets.
//
// Supported (checked against moto's Step Functions by the corpus in
// testdata/corpus, see TestCorpusAgreesWithMoto):
//   - Task: Resource bound by name; lambda:invoke and
//     lambda:invoke.waitForTaskToken bound by Parameters.FunctionName with
//     Parameters.Payload, returning {"Payload", "StatusCode",
//     "ExecutedVersion"} like the Lambda integration; Parameters,
//     ResultSelector, ResultPath (incl. null), InputPath, OutputPath,
//     TimeoutSeconds(Path), HeartbeatSeconds(Path), Retry (ErrorEquals,
//     IntervalSeconds, MaxAttempts, BackoffRate), Catch (ErrorEquals,
//     ResultPath, Next).
//   - Choice: String/Numeric/Timestamp Equals, LessThan(Equals),
//     GreaterThan(Equals), each with its Path variant; StringMatches;
//     BooleanEquals(Path); IsPresent, IsNull, IsString, IsNumeric,
//     IsBoolean, IsTimestamp; And, Or, Not; Default.
//   - Wait: Seconds, SecondsPath, Timestamp, TimestampPath (RFC 3339).
//   - Pass (Result, Parameters, ResultPath), Succeed, Fail (Error, Cause).
//   - Parallel (Branches, Parameters, ResultSelector, ResultPath, Retry,
//     Catch) and inline Map (ItemsPath, ItemSelector or Parameters with
//     $$.Map.Item.Index/Value, ItemProcessor or Iterator, MaxConcurrency,
//     ResultSelector, ResultPath, Retry, Catch).
//   - Paths $, $.a.b, $.a[0], $['a'] and the context object $$
//     (Execution.Id/Name/StartTime/Input, StateMachine.Name,
//     State.Name/EnteredTime/RetryCount, Task.Token).
//   - Intrinsics States.Format, StringToJson, JsonToString, Array,
//     MathAdd, UUID.
//   - Errors States.ALL, States.TaskFailed (any error but States.Timeout),
//     States.Timeout, States.HeartbeatTimeout; States.Runtime,
//     States.ResultPathMatchFailure and intrinsic failures end the
//     execution and are never caught, as in Step Functions.
//
// Not supported (rejected at load): other state fields (ErrorPath,
// CausePath, Credentials, Arguments/Output/Assign and QueryLanguage
// JSONata, Map ItemReader/ItemBatcher/ResultWriter/ToleratedFailure*,
// distributed Map), Retry MaxDelaySeconds/JitterStrategy, a top-level
// TimeoutSeconds, lambda:invoke parameters other than FunctionName and
// Payload, wildcard/filter/slice JSONPath, and the other intrinsics.
package asl
