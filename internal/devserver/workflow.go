package devserver

import (
	"fmt"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
	"github.com/escrow-pam/escrow/internal/tasks"
	"github.com/escrow-pam/escrow/statemachines"
)

// newRunner loads every state machine (the files Step Functions runs, with
// ${TasksFunctionArn} bound to the same task handlers the tasks Lambda
// serves) into the embedded runner.
func newRunner(store *sqlite.Store, h *tasks.Handler, logger *slog.Logger) (*asl.Runner, error) {
	subs := map[string]string{"TasksFunctionArn": statemachines.TasksFunction, "RotateFunctionArn": statemachines.RotateFunction}
	machines := map[string]*asl.Machine{}
	files, err := fs.Glob(statemachines.Files, "*.asl.json")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		def, err := statemachines.Files.ReadFile(f)
		if err != nil {
			return nil, err
		}
		m, err := asl.Parse(def, subs)
		if err != nil {
			return nil, fmt.Errorf("state machine %s: %w", f, err)
		}
		machines[strings.TrimSuffix(f, ".asl.json")] = m
	}
	// In -dev one process is both the tasks and the rotate function.
	return asl.New(asl.Config{
		Store:     executionStore(store),
		Logger:    logger,
		Resources: map[string]asl.Handler{statemachines.TasksFunction: h.ForRunner(), statemachines.RotateFunction: h.ForRunner()},
	}, machines)
}

// executionStore is where executions, timers and tokens persist: the dev
// database, so a restarted server resumes what was waiting.
func executionStore(s *sqlite.Store) asl.Store { return s.Executions() }
