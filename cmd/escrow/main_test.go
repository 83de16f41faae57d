package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/escrow-pam/escrow/internal/devserver"
	"github.com/escrow-pam/escrow/internal/ticket/snowtest"
)

// TestMain lets the test binary act as the escrow command inside scripts.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"escrow": main})
}

// TestScripts runs cmd/escrow/testdata/*.txt, each against its own dev
// server (fresh data directory, demo data seeded) started in this process.
//
// Scripts see ESCROW_SERVER and ESCROW_CONFIG_DIR, TOKEN_<USER> for each
// demo user, and the server's log in $WORK/server.log.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup:               setupServer,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"capture":     cmdCapture,
			"sleep":       cmdSleep,
			"curlget":     cmdCurlGet,
			"exits":       cmdExits,
			"perm":        cmdPerm,
			"freeport":    cmdFreeport,
			"waithealthy": cmdWaitHealthy,
		},
	})
}

func setupServer(env *testscript.Env) error {
	logf, err := os.Create(filepath.Join(env.WorkDir, "server.log"))
	if err != nil {
		return err
	}
	srv, err := devserver.Start(context.Background(), devserver.Config{
		Addr:    "127.0.0.1:0",
		DataDir: filepath.Join(env.WorkDir, "escrow-data"),
		Logger:  slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Seed:    true,
	})
	if err != nil {
		logf.Close()
		return fmt.Errorf("start dev server: %w", err)
	}
	env.Defer(func() {
		if err := srv.Close(); err != nil {
			env.T().Log("close dev server:", err)
		}
		logf.Close()
	})
	snow := snowtest.New("escrow", "snow-canary-pw")
	env.Defer(snow.Close)
	env.Setenv("SNOW_URL", snow.URL)
	env.Setenv("ESCROW_SERVER", srv.URL)
	env.Setenv("ESCROW_CONFIG_DIR", filepath.Join(env.WorkDir, "config"))
	for _, u := range []string{"alice", "bob", "carol", "admin", "auditor"} {
		tok, err := srv.Token(u)
		if err != nil {
			return fmt.Errorf("token for %s: %w", u, err)
		}
		env.Setenv("TOKEN_"+strings.ToUpper(u), tok)
	}
	return nil
}

// capture VAR REGEXP sets VAR to the first submatch of REGEXP in the last
// command's stdout.
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture VAR REGEXP")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	m := re.FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("capture: %q does not match stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
}

// exits N PROGRAM ARGS... runs a program that must exit with status N.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits N program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("run %s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// perm MODE FILE checks a file's permission bits (octal).
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: perm MODE file")
	}
	want, err := strconv.ParseUint(args[0], 8, 32)
	ts.Check(err)
	fi, err := os.Stat(ts.MkAbs(args[1]))
	ts.Check(err)
	if got := fi.Mode().Perm(); got != os.FileMode(want) {
		ts.Fatalf("%s has mode %#o, want %#o", args[1], got, want)
	}
}

// freeport VAR sets VAR to a loopback TCP port that was free a moment ago.
func cmdFreeport(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := ln.Addr().(*net.TCPAddr).Port
	ts.Check(ln.Close())
	ts.Setenv(args[0], strconv.Itoa(port))
}

// waithealthy URL polls URL/healthz until it answers 200 (at most 60 s, so
// a slow machine is not a failure; this is readiness, not a timing check).
func cmdWaitHealthy(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waithealthy URL")
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get(args[0] + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s never became healthy: %v", args[0], err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cmdSleep waits: sleep DURATION (for windows that end in real time).
func cmdSleep(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	if err != nil || d > time.Minute {
		ts.Fatalf("sleep: %q is not a duration up to 1m", args[0])
	}
	time.Sleep(d)
}

// cmdCurlGet prints the indented JSON that GET URL answers: curlget URL.
func cmdCurlGet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: curlget URL")
	}
	resp, err := http.Get(args[0])
	ts.Check(err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	ts.Check(err)
	if resp.StatusCode != http.StatusOK {
		ts.Fatalf("GET %s: %d %s", args[0], resp.StatusCode, body)
	}
	var out bytes.Buffer
	ts.Check(json.Indent(&out, body, "", "  "))
	fmt.Fprintln(ts.Stdout(), out.String())
}
