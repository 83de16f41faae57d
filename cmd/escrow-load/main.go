// Command escrow-load is the loopback load run of `make bench`: it builds
// and starts a real `escrow server -dev` process in a temporary data
// directory, then drives reveals of a demo secret (auth + ACL + decrypt +
// durable audit append) with 1 and 8 concurrent clients, and prints
// requests/s, p50 and p99, the audit record size, and a same-run baseline
// (GET /healthz, no auth or store) so the ratio can be compared across
// machines.
//
// It only ever talks to 127.0.0.1, and every run is bounded in time.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "escrow-load:", err)
		os.Exit(1)
	}
}

func run() error {
	duration := flag.Duration("duration", 5*time.Second, "measured time per run")
	warmup := flag.Duration("warmup", time.Second, "unmeasured time before each run")
	clientsFlag := flag.String("clients", "1,8", "comma-separated client counts")
	flag.Parse()
	var clients []int
	for _, f := range strings.Split(*clientsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 64 {
			return fmt.Errorf("-clients: %q is not a count from 1 to 64", f)
		}
		clients = append(clients, n)
	}

	tmp, err := os.MkdirTemp("", "escrow-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "escrow")
	fmt.Fprintln(os.Stderr, "building escrow ...")
	build := exec.Command("go", "build", "-o", bin, "./cmd/escrow")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build escrow: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	dataDir := filepath.Join(tmp, "data")
	srv := exec.Command(bin, "server", "-dev", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--data", dataDir)
	logf, err := os.Create(filepath.Join(tmp, "server.log"))
	if err != nil {
		return err
	}
	srv.Stdout, srv.Stderr = logf, logf
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
	}()
	if err := waitHealthy(base, 60*time.Second); err != nil {
		out, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("%w\nserver log:\n%s", err, out)
	}

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	token, err := devToken(hc, base, "alice")
	if err != nil {
		return err
	}
	id, err := secretID(hc, base, token, "/prod/db/postgres-admin")
	if err != nil {
		return err
	}
	reveal := base + "/v1/secrets/" + id + "/value"
	health := base + "/healthz"

	dbPath := filepath.Join(dataDir, "escrow.db")
	fmt.Printf("\nLoopback load against `escrow server -dev` (SQLite, durable audit, local master key); %d CPUs, %s per run\n", runtime.NumCPU(), *duration)
	fmt.Printf("%-28s %8s %12s %10s %10s\n", "run", "clients", "requests/s", "p50 ms", "p99 ms")
	var revealed int64
	var baseline float64
	for _, n := range clients {
		r, err := load(hc, health, "", n, *warmup, *duration)
		if err != nil {
			return err
		}
		fmt.Printf("%-28s %8d %12.0f %10.3f %10.3f\n", "GET /healthz (baseline)", n, r.rps, r.p50, r.p99)
		baseline = r.rps
		r2, err := load(hc, reveal, token, n, *warmup, *duration)
		if err != nil {
			return err
		}
		revealed += int64(r2.count)
		fmt.Printf("%-28s %8d %12.0f %10.3f %10.3f\n", "GET /v1/secrets/{id}/value", n, r2.rps, r2.p50, r2.p99)
		fmt.Printf("%-28s %8d %12.2f\n", "  reveal/baseline ratio", n, r2.rps/baseline)
	}

	auditorTok, err := devToken(hc, base, "auditor")
	if err != nil {
		return err
	}
	rec, err := oneAuditRecord(hc, base, auditorTok)
	if err != nil {
		return err
	}
	fmt.Printf("\naudit record of one reveal: %d bytes as JSON\n", len(rec))
	disk := fileSize(dbPath) + fileSize(dbPath+"-wal")
	if revealed > 0 {
		fmt.Printf("store growth: %d bytes on disk after %d audited reveals (%.0f bytes/reveal incl. indexes and WAL)\n",
			disk, revealed, float64(disk)/float64(revealed))
	}
	fmt.Println("aim: reveal >= 5,000 requests/s with 8 clients, p99 <= 8 ms")

	// Exclusive checkout: 64 clients race for one secret, over HTTP.
	const rounds = 20
	var raceTokens []string
	for _, u := range []string{"alice", "carol"} {
		tok, err := devToken(hc, base, u)
		if err != nil {
			return err
		}
		raceTokens = append(raceTokens, tok)
	}
	adminTok, err := devToken(hc, base, "admin")
	if err != nil {
		return err
	}
	bgID, err := secretID(hc, base, adminTok, "/prod/breakglass/db-breakglass")
	if err != nil {
		return err
	}
	settle, err := checkoutRace(hc, base, bgID, raceTokens, adminTok, rounds)
	if err != nil {
		return err
	}
	wins, err := successfulCheckouts(hc, base, auditorTok, bgID)
	if err != nil {
		return err
	}
	if wins != rounds {
		return fmt.Errorf("checkout race: %d successful checkout audit records after %d rounds", wins, rounds)
	}
	fmt.Printf("\ncheckout race: %d rounds of 64 clients over HTTP, each exactly 1x201 and 63x409; %d successful checkout audit records\n", rounds, wins)
	fmt.Printf("checkout race settles in %.1f ms (median), %.1f ms (max)\n", ms(median(settle)), ms(slices.Max(settle)))

	lag, err := expiryLag(hc, base)
	if err != nil {
		return fmt.Errorf("expiry lag: %w", err)
	}
	fmt.Printf("\nExpiry lag of a 3 s grant on /prod/root/aws-root (request, two approvals, reveal until refused):\n")
	fmt.Printf("  reveal refused %.0f ms after the grant's end (polling every 10 ms; aim <= 1000 ms)\n", lag.refused.Seconds()*1000)
	fmt.Printf("  grant.expire audit record visible %.0f ms after the end (server-side lag %d ms; aim <= 2000 ms)\n", lag.recorded.Seconds()*1000, lag.serverMs)
	return nil
}

type lags struct {
	refused, recorded time.Duration
	serverMs          int64
}

// expiryLag requests a 3 s grant, has bob and carol approve it, then reveals
// until refused, and polls the audit log for the sweeper's grant.expire.
func expiryLag(hc *http.Client, base string) (lags, error) {
	tok := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol", "auditor"} {
		t, err := devToken(hc, base, u)
		if err != nil {
			return lags{}, err
		}
		tok[u] = t
	}
	id, err := secretID(hc, base, tok["alice"], "/prod/root/aws-root")
	if err != nil {
		return lags{}, err
	}
	var req struct{ ID string }
	if err := send(hc, "POST", base+"/v1/secrets/"+id+"/requests", tok["alice"], `{"duration":"3s","comment":"CHG0012345"}`, &req); err != nil {
		return lags{}, err
	}
	var dec struct {
		Grant *struct {
			ID  string
			End time.Time
		}
	}
	for _, u := range []string{"bob", "carol"} {
		if err := send(hc, "POST", base+"/v1/requests/"+req.ID+"/decision", tok[u], `{"decision":"approve"}`, &dec); err != nil {
			return lags{}, err
		}
	}
	if dec.Grant == nil {
		return lags{}, errors.New("no grant after two approvals")
	}
	var out lags
	deadline := dec.Grant.End.Add(10 * time.Second)
	for {
		err := send(hc, "GET", base+"/v1/secrets/"+id+"/value", tok["alice"], "", nil)
		if err != nil {
			out.refused = time.Since(dec.Grant.End)
			break
		}
		if time.Now().After(deadline) {
			return lags{}, errors.New("reveal still allowed 10 s after the grant's end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		var page struct {
			Records []struct {
				Details map[string]string
			}
		}
		if err := send(hc, "GET", base+"/v1/audit?action=grant.expire&secret="+id+"&limit=10", tok["auditor"], "", &page); err != nil {
			return lags{}, err
		}
		for _, r := range page.Records {
			if r.Details["grant"] == dec.Grant.ID {
				out.recorded = time.Since(dec.Grant.End)
				out.serverMs, _ = strconv.ParseInt(r.Details["lagMs"], 10, 64)
				return out, nil
			}
		}
		if time.Now().After(deadline) {
			return lags{}, errors.New("no grant.expire record 10 s after the grant's end")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// send makes one authorized call; a non-2xx answer is an error.
func send(hc *http.Client, method, url, token, body string, v any) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	if v == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

type result struct {
	count         int
	rps, p50, p99 float64
}

// load runs n clients against url for warmup+d and measures the last d.
func load(hc *http.Client, url, token string, n int, warmup, d time.Duration) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), warmup+d+30*time.Second)
	defer cancel()
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(d)
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<16)
			for {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := hc.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				if t0.After(measureFrom) {
					local = append(local, time.Since(t0))
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return result{}, firstErr
	}
	if len(lat) == 0 {
		return result{}, errors.New("no requests completed")
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	return result{count: len(lat), rps: float64(len(lat)) / d.Seconds(), p50: pct(0.50), p99: pct(0.99)}, nil
}

func waitHealthy(base string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("server at %s not healthy after %s", base, limit)
}

func devToken(hc *http.Client, base, user string) (string, error) {
	resp, err := hc.Post(base+"/dev/token", "application/json", bytes.NewReader([]byte(`{"user":"`+user+`"}`)))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("dev token for %s: status %d %v", user, resp.StatusCode, err)
	}
	return out.Token, nil
}

func get(hc *http.Client, url, token string, v any) error {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func secretID(hc *http.Client, base, token, path string) (string, error) {
	var page struct {
		Secrets []struct{ ID string } `json:"secrets"`
	}
	if err := get(hc, base+"/v1/secrets?path="+path, token, &page); err != nil {
		return "", err
	}
	if len(page.Secrets) != 1 {
		return "", fmt.Errorf("demo secret %s not found", path)
	}
	return page.Secrets[0].ID, nil
}

func oneAuditRecord(hc *http.Client, base, token string) ([]byte, error) {
	var page struct {
		Records []json.RawMessage `json:"records"`
	}
	if err := get(hc, base+"/v1/audit?action=secret.reveal&limit=1", token, &page); err != nil {
		return nil, err
	}
	if len(page.Records) != 1 {
		return nil, errors.New("no reveal audit record found")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, page.Records[0]); err != nil {
		return nil, err
	}
	return compact.Bytes(), nil
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
