package asl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Resources of the Lambda service integration.
const (
	LambdaInvoke         = "arn:aws:states:::lambda:invoke"
	LambdaInvokeCallback = "arn:aws:states:::lambda:invoke.waitForTaskToken"
	callbackSuffix       = ".waitForTaskToken"
)

// Machine is a parsed, validated state machine definition.
type Machine struct {
	StartAt string
	States  map[string]*State
}

// State is one state of a Machine. Only the fields of its Type are set.
type State struct {
	Name       string
	Type       string
	Next       string
	End        bool
	InputPath  *string // nil: "$"; pointer to "" never happens; JSON null → nullPath
	OutputPath *string
	ResultPath *string

	Parameters     *template
	ResultSelector *template
	Result         json.RawMessage // Pass

	// Task
	Resource         string
	FunctionName     string    // lambda:invoke: the binding key
	Payload          *template // lambda:invoke: the Payload template
	Callback         bool      // .waitForTaskToken
	TimeoutSeconds   int
	HeartbeatSeconds int
	// TimeoutSecondsPath and HeartbeatSecondsPath take the value from the
	// state's effective input (after InputPath).
	TimeoutSecondsPath   string
	HeartbeatSecondsPath string
	Retry                []Retrier
	Catch                []Catcher

	// Choice
	Choices []*Rule
	Default string

	// Wait
	Seconds       *int
	SecondsPath   string
	Timestamp     string
	TimestampPath string

	// Fail
	Error, Cause string

	// Parallel: the branches. Map: Branches[0] is the item processor.
	Branches []*Machine

	// Map (inline only). ItemSelector (or the older Parameters) lands in
	// Parameters.
	ItemsPath      string
	MaxConcurrency int
}

// Retrier is one element of a Retry field.
type Retrier struct {
	ErrorEquals     []string
	IntervalSeconds int
	MaxAttempts     int
	BackoffRate     float64
}

// Catcher is one element of a Catch field.
type Catcher struct {
	ErrorEquals []string
	ResultPath  *string
	Next        string
}

// nullPath stands for a path field set to JSON null.
const nullPath = "\x00null"

var substRE = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// Parse applies DefinitionSubstitutions (${Name}) to def and validates the
// result. Every construct the runner cannot execute is an error naming the
// state, so a definition either runs faithfully or does not load.
func Parse(def []byte, substitutions map[string]string) (*Machine, error) {
	var missing []string
	def = substRE.ReplaceAllFunc(def, func(m []byte) []byte {
		name := string(m[2 : len(m)-1])
		v, ok := substitutions[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		// Substituted inside JSON strings: escape like a JSON string body.
		b, _ := json.Marshal(v)
		return b[1 : len(b)-1]
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("parse: no substitution for %s", strings.Join(missing, ", "))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(def, &raw); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	m, err := parseMachine(raw, "")
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := checkUniqueNames(m, map[string]bool{}); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return m, nil
}

// checkUniqueNames enforces ASL's rule that state names are unique in the
// whole machine, branches included (history events are keyed by name).
func checkUniqueNames(m *Machine, seen map[string]bool) error {
	for name, s := range m.States {
		if seen[name] {
			return fmt.Errorf("state %q: name used twice", name)
		}
		seen[name] = true
		for _, b := range s.Branches {
			if err := checkUniqueNames(b, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

func parseMachine(raw map[string]json.RawMessage, where string) (*Machine, error) {
	m := &Machine{States: map[string]*State{}}
	for k, v := range raw {
		switch k {
		case "Comment", "Version":
		case "StartAt":
			if err := json.Unmarshal(v, &m.StartAt); err != nil {
				return nil, fmt.Errorf("%sStartAt: %w", where, err)
			}
		case "States":
			var states map[string]json.RawMessage
			if err := json.Unmarshal(v, &states); err != nil {
				return nil, fmt.Errorf("%sStates: %w", where, err)
			}
			for name, sv := range states {
				s, err := parseState(name, sv)
				if err != nil {
					return nil, fmt.Errorf("state %q: %w", name, err)
				}
				m.States[name] = s
			}
		default:
			return nil, fmt.Errorf("%sfield %s not supported", where, k)
		}
	}
	if m.StartAt == "" {
		return nil, fmt.Errorf("%sStartAt missing", where)
	}
	if m.States[m.StartAt] == nil {
		return nil, fmt.Errorf("%sStartAt %q is not a state", where, m.StartAt)
	}
	names := make([]string, 0, len(m.States))
	for n := range m.States {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := m.States[n]
		targets := []string{s.Next, s.Default}
		for _, c := range s.Catch {
			targets = append(targets, c.Next)
		}
		for _, r := range s.Choices {
			targets = append(targets, r.Next)
		}
		for _, t := range targets {
			if t != "" && m.States[t] == nil {
				return nil, fmt.Errorf("state %q: transition to unknown state %q", n, t)
			}
		}
	}
	return m, nil
}

// fieldsByType lists the fields each state type may carry.
var fieldsByType = map[string]string{
	"Task":     "Type Comment Next End InputPath OutputPath ResultPath Parameters ResultSelector Resource TimeoutSeconds HeartbeatSeconds TimeoutSecondsPath HeartbeatSecondsPath Retry Catch",
	"Pass":     "Type Comment Next End InputPath OutputPath ResultPath Parameters Result",
	"Choice":   "Type Comment InputPath OutputPath Choices Default",
	"Wait":     "Type Comment Next End InputPath OutputPath Seconds SecondsPath Timestamp TimestampPath",
	"Parallel": "Type Comment Next End InputPath OutputPath ResultPath Parameters ResultSelector Branches Retry Catch",
	"Map":      "Type Comment Next End InputPath OutputPath ResultPath ResultSelector ItemsPath ItemSelector Parameters ItemProcessor Iterator MaxConcurrency Retry Catch",
	"Succeed":  "Type Comment InputPath OutputPath",
	"Fail":     "Type Comment Error Cause",
}

func parseState(name string, data json.RawMessage) (*State, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	s := &State{Name: name}
	if err := json.Unmarshal(raw["Type"], &s.Type); err != nil {
		return nil, fmt.Errorf("field Type: %v", err)
	}
	allowed, ok := fieldsByType[s.Type]
	if !ok {
		return nil, fmt.Errorf("state type %q not supported", s.Type)
	}
	allow := map[string]bool{}
	for _, f := range strings.Fields(allowed) {
		allow[f] = true
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !allow[k] {
			return nil, fmt.Errorf("field %s not supported in a %s state", k, s.Type)
		}
	}
	str := func(k string, dst *string) error {
		if v, ok := raw[k]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return fmt.Errorf("%s: %v", k, err)
			}
		}
		return nil
	}
	num := func(k string, dst *int) error {
		if v, ok := raw[k]; ok {
			if err := json.Unmarshal(v, dst); err != nil || *dst < 0 {
				return fmt.Errorf("%s must be a non-negative integer", k)
			}
		}
		return nil
	}
	path := func(k string, ref bool) (*string, error) {
		v, ok := raw[k]
		if !ok {
			return nil, nil
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			p := nullPath
			return &p, nil
		}
		var p string
		if err := json.Unmarshal(v, &p); err != nil {
			return nil, fmt.Errorf("%s: %v", k, err)
		}
		if _, err := parsePath(p); err != nil {
			return nil, fmt.Errorf("%s: %v", k, err)
		}
		if ref && strings.HasPrefix(p, "$$") {
			return nil, fmt.Errorf("%s: context object not allowed", k)
		}
		return &p, nil
	}
	var err error
	for _, f := range []func() error{
		func() error { return str("Next", &s.Next) },
		func() error { return str("Default", &s.Default) },
		func() error { return str("Resource", &s.Resource) },
		func() error { return str("Error", &s.Error) },
		func() error { return str("Cause", &s.Cause) },
		func() error { return str("Timestamp", &s.Timestamp) },
		func() error { return num("TimeoutSeconds", &s.TimeoutSeconds) },
		func() error {
			for k, dst := range map[string]*string{"TimeoutSecondsPath": &s.TimeoutSecondsPath, "HeartbeatSecondsPath": &s.HeartbeatSecondsPath} {
				if p, err := path(k, false); err != nil {
					return err
				} else if p != nil {
					if *p == nullPath {
						return fmt.Errorf("field %s must be a path", k)
					}
					*dst = *p
				}
			}
			return nil
		},
		func() error { return num("HeartbeatSeconds", &s.HeartbeatSeconds) },
		func() error {
			if v, ok := raw["End"]; ok {
				return json.Unmarshal(v, &s.End)
			}
			return nil
		},
		func() error { s.InputPath, err = path("InputPath", false); return err },
		func() error { s.OutputPath, err = path("OutputPath", false); return err },
		func() error { s.ResultPath, err = path("ResultPath", true); return err },
		func() error {
			if v, ok := raw["SecondsPath"]; ok {
				if err := json.Unmarshal(v, &s.SecondsPath); err != nil {
					return fmt.Errorf("SecondsPath: %v", err)
				}
				if _, err := parsePath(s.SecondsPath); err != nil {
					return fmt.Errorf("SecondsPath: %v", err)
				}
			}
			if v, ok := raw["TimestampPath"]; ok {
				if err := json.Unmarshal(v, &s.TimestampPath); err != nil {
					return fmt.Errorf("TimestampPath: %v", err)
				}
				if _, err := parsePath(s.TimestampPath); err != nil {
					return fmt.Errorf("TimestampPath: %v", err)
				}
			}
			if v, ok := raw["Seconds"]; ok {
				var n int
				if err := json.Unmarshal(v, &n); err != nil || n < 0 {
					return fmt.Errorf("field Seconds must be a non-negative integer")
				}
				s.Seconds = &n
			}
			return nil
		},
		func() error {
			if v, ok := raw["Parameters"]; ok {
				t, err := parseTemplate(v)
				if err != nil {
					return fmt.Errorf("field Parameters: %v", err)
				}
				s.Parameters = t
			}
			if v, ok := raw["ResultSelector"]; ok {
				t, err := parseTemplate(v)
				if err != nil {
					return fmt.Errorf("ResultSelector: %v", err)
				}
				s.ResultSelector = t
			}
			if v, ok := raw["Result"]; ok {
				s.Result = v
			}
			return nil
		},
		func() error { return parseRetryCatch(s, raw) },
		func() error {
			if v, ok := raw["Choices"]; ok {
				var rules []json.RawMessage
				if err := json.Unmarshal(v, &rules); err != nil {
					return fmt.Errorf("field Choices: %v", err)
				}
				for i, rv := range rules {
					r, err := parseRule(rv, true)
					if err != nil {
						return fmt.Errorf("field Choices[%d]: %v", i, err)
					}
					s.Choices = append(s.Choices, r)
				}
			}
			return nil
		},
		func() error { return parseMap(s, raw) },
		func() error {
			if v, ok := raw["Branches"]; ok {
				var bs []map[string]json.RawMessage
				if err := json.Unmarshal(v, &bs); err != nil {
					return fmt.Errorf("field Branches: %v", err)
				}
				for i, b := range bs {
					m, err := parseMachine(b, fmt.Sprintf("Branches[%d]: ", i))
					if err != nil {
						return err
					}
					s.Branches = append(s.Branches, m)
				}
			}
			return nil
		},
	} {
		if err := f(); err != nil {
			return nil, err
		}
	}
	return s, validateState(s)
}

func parseRetryCatch(s *State, raw map[string]json.RawMessage) error {
	if v, ok := raw["Retry"]; ok {
		var rs []map[string]json.RawMessage
		if err := json.Unmarshal(v, &rs); err != nil {
			return fmt.Errorf("field Retry: %v", err)
		}
		for i, r := range rs {
			rt := Retrier{IntervalSeconds: 1, MaxAttempts: 3, BackoffRate: 2}
			for k, fv := range r {
				var err error
				switch k {
				case "ErrorEquals":
					err = json.Unmarshal(fv, &rt.ErrorEquals)
				case "IntervalSeconds":
					err = json.Unmarshal(fv, &rt.IntervalSeconds)
					if err == nil && rt.IntervalSeconds < 1 {
						err = fmt.Errorf("must be at least 1")
					}
				case "MaxAttempts":
					err = json.Unmarshal(fv, &rt.MaxAttempts)
					if err == nil && rt.MaxAttempts < 0 {
						err = fmt.Errorf("must not be negative")
					}
				case "BackoffRate":
					err = json.Unmarshal(fv, &rt.BackoffRate)
					if err == nil && rt.BackoffRate < 1 {
						err = fmt.Errorf("must be at least 1")
					}
				case "Comment":
				default:
					err = fmt.Errorf("not supported")
				}
				if err != nil {
					return fmt.Errorf("field Retry[%d].%s: %v", i, k, err)
				}
			}
			if err := checkErrorEquals(rt.ErrorEquals, i == len(rs)-1); err != nil {
				return fmt.Errorf("field Retry[%d]: %v", i, err)
			}
			s.Retry = append(s.Retry, rt)
		}
	}
	if v, ok := raw["Catch"]; ok {
		var cs []map[string]json.RawMessage
		if err := json.Unmarshal(v, &cs); err != nil {
			return fmt.Errorf("field Catch: %v", err)
		}
		for i, c := range cs {
			var ct Catcher
			for k, fv := range c {
				var err error
				switch k {
				case "ErrorEquals":
					err = json.Unmarshal(fv, &ct.ErrorEquals)
				case "Next":
					err = json.Unmarshal(fv, &ct.Next)
				case "ResultPath":
					if bytes.Equal(bytes.TrimSpace(fv), []byte("null")) {
						p := nullPath
						ct.ResultPath = &p
						break
					}
					var p string
					if err = json.Unmarshal(fv, &p); err == nil {
						_, err = parsePath(p)
						ct.ResultPath = &p
					}
				case "Comment":
				default:
					err = fmt.Errorf("not supported")
				}
				if err != nil {
					return fmt.Errorf("field Catch[%d].%s: %v", i, k, err)
				}
			}
			if ct.Next == "" {
				return fmt.Errorf("field Catch[%d]: Next missing", i)
			}
			if err := checkErrorEquals(ct.ErrorEquals, i == len(cs)-1); err != nil {
				return fmt.Errorf("field Catch[%d]: %v", i, err)
			}
			s.Catch = append(s.Catch, ct)
		}
	}
	return nil
}

func checkErrorEquals(names []string, last bool) error {
	if len(names) == 0 {
		return fmt.Errorf("ErrorEquals is empty")
	}
	for _, n := range names {
		if n == "States.ALL" && (len(names) > 1 || !last) {
			return fmt.Errorf("States.ALL must appear alone in the last element")
		}
	}
	return nil
}

func validateState(s *State) error {
	switch s.Type {
	case "Choice":
		if len(s.Choices) == 0 {
			return fmt.Errorf("field Choices is empty")
		}
		return nil
	case "Succeed", "Fail":
		return nil
	}
	if s.End == (s.Next != "") {
		return fmt.Errorf("exactly one of Next and End:true is required")
	}
	switch s.Type {
	case "Wait":
		n := 0
		if s.Seconds != nil {
			n++
		}
		for _, v := range []string{s.SecondsPath, s.Timestamp, s.TimestampPath} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("exactly one of Seconds, SecondsPath, Timestamp and TimestampPath is required")
		}
		if s.Timestamp != "" {
			if _, err := parseTimestamp(s.Timestamp); err != nil {
				return fmt.Errorf("field Timestamp: %v", err)
			}
		}
	case "Pass":
		if s.Result != nil && s.Parameters != nil {
			return fmt.Errorf("fields Result and Parameters are exclusive")
		}
	case "Parallel":
		if len(s.Branches) == 0 {
			return fmt.Errorf("field Branches is empty")
		}
	case "Task":
		return validateTask(s)
	case "Map":
		if len(s.Branches) != 1 {
			return fmt.Errorf("exactly one of ItemProcessor and Iterator is required")
		}
	}
	return nil
}

func validateTask(s *State) error {
	if s.Resource == "" {
		return fmt.Errorf("resource missing")
	}
	if s.HeartbeatSeconds > 0 && s.TimeoutSeconds > 0 && s.HeartbeatSeconds >= s.TimeoutSeconds {
		return fmt.Errorf("HeartbeatSeconds must be smaller than TimeoutSeconds")
	}
	if s.TimeoutSeconds > 0 && s.TimeoutSecondsPath != "" {
		return fmt.Errorf("fields TimeoutSeconds and TimeoutSecondsPath are exclusive")
	}
	if s.HeartbeatSeconds > 0 && s.HeartbeatSecondsPath != "" {
		return fmt.Errorf("fields HeartbeatSeconds and HeartbeatSecondsPath are exclusive")
	}
	s.Callback = strings.HasSuffix(s.Resource, callbackSuffix)
	if (s.HeartbeatSeconds > 0 || s.HeartbeatSecondsPath != "") && !s.Callback {
		return fmt.Errorf("field HeartbeatSeconds not supported without .waitForTaskToken")
	}
	if s.Resource != LambdaInvoke && s.Resource != LambdaInvokeCallback {
		if strings.HasPrefix(s.Resource, "arn:aws:states:::lambda:") {
			return fmt.Errorf("resource %s not supported", s.Resource)
		}
		return nil
	}
	// The Lambda integration: bind by FunctionName, pass Payload.
	if s.Parameters == nil || s.Parameters.kind != tmplObject {
		return fmt.Errorf("resource %s needs Parameters with FunctionName and Payload", s.Resource)
	}
	for _, f := range s.Parameters.fields {
		switch f.key {
		case "FunctionName":
			name, ok := f.val.lit.(string)
			if f.val.kind != tmplLiteral || !ok {
				return fmt.Errorf("field Parameters.FunctionName must be a literal string")
			}
			s.FunctionName = name
		case "Payload":
			s.Payload = f.val
		default:
			return fmt.Errorf("field Parameters.%s not supported for %s", f.key, s.Resource)
		}
	}
	if s.FunctionName == "" || s.Payload == nil {
		return fmt.Errorf("resource %s needs Parameters.FunctionName and Parameters.Payload", s.Resource)
	}
	return nil
}

// bindingKey is the Resources key a Task state is bound through.
func (s *State) bindingKey() string {
	if s.FunctionName != "" {
		return s.FunctionName
	}
	return s.Resource
}

// walk calls f for every state, branches included.
func (m *Machine) walk(f func(*State) error) error {
	names := make([]string, 0, len(m.States))
	for n := range m.States {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := m.States[n]
		if err := f(s); err != nil {
			return err
		}
		for _, b := range s.Branches {
			if err := b.walk(f); err != nil {
				return err
			}
		}
	}
	return nil
}

// Resources returns the binding keys the machine's Task states need: the
// FunctionName of lambda:invoke tasks, else the Resource.
func (m *Machine) Resources() []string {
	seen := map[string]bool{}
	var out []string
	_ = m.walk(func(s *State) error {
		if s.Type == "Task" && !seen[s.bindingKey()] {
			seen[s.bindingKey()] = true
			out = append(out, s.bindingKey())
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// parseMap reads the Map-only fields. Only the inline mode exists here.
func parseMap(s *State, raw map[string]json.RawMessage) error {
	if s.Type != "Map" {
		return nil
	}
	if v, ok := raw["ItemsPath"]; ok {
		if err := json.Unmarshal(v, &s.ItemsPath); err != nil {
			return fmt.Errorf("field ItemsPath: %v", err)
		}
		if _, err := parsePath(s.ItemsPath); err != nil {
			return fmt.Errorf("field ItemsPath: %v", err)
		}
	}
	if v, ok := raw["MaxConcurrency"]; ok {
		if err := json.Unmarshal(v, &s.MaxConcurrency); err != nil || s.MaxConcurrency < 0 {
			return fmt.Errorf("field MaxConcurrency must be a non-negative integer")
		}
	}
	if v, ok := raw["ItemSelector"]; ok {
		if s.Parameters != nil {
			return fmt.Errorf("fields ItemSelector and Parameters are exclusive")
		}
		t, err := parseTemplate(v)
		if err != nil {
			return fmt.Errorf("field ItemSelector: %v", err)
		}
		s.Parameters = t
	}
	for _, k := range []string{"ItemProcessor", "Iterator"} {
		v, ok := raw[k]
		if !ok {
			continue
		}
		var proc map[string]json.RawMessage
		if err := json.Unmarshal(v, &proc); err != nil {
			return fmt.Errorf("field %s: %v", k, err)
		}
		if pc, ok := proc["ProcessorConfig"]; ok {
			var cfg map[string]string
			if err := json.Unmarshal(pc, &cfg); err != nil {
				return fmt.Errorf("field %s.ProcessorConfig: %v", k, err)
			}
			for ck, cv := range cfg {
				if ck != "Mode" || cv != "INLINE" {
					return fmt.Errorf("field %s.ProcessorConfig.%s %q not supported (only Mode INLINE)", k, ck, cv)
				}
			}
			delete(proc, "ProcessorConfig")
		}
		m, err := parseMachine(proc, k+": ")
		if err != nil {
			return err
		}
		s.Branches = append(s.Branches, m)
	}
	return nil
}
