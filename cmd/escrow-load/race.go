package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// checkoutRace races 64 clients (alice and carol, both allowed) to check
// out the seeded break-glass secret, rounds times over HTTP. Each round
// must end with exactly one 201 and 63 409s; an admin's forced check-in
// frees the secret for the next round. It returns each round's settle time.
func checkoutRace(hc *http.Client, base, id string, tokens []string, admin string, rounds int) ([]time.Duration, error) {
	const clients = 64
	body := []byte(`{"comment":"bench: checkout race"}`)
	var settle []time.Duration
	for round := range rounds {
		codes := make([]int, clients)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range clients {
			wg.Go(func() {
				<-start
				codes[i] = post(hc, base+"/v1/secrets/"+id+"/checkout", tokens[i%len(tokens)], body)
			})
		}
		t0 := time.Now()
		close(start)
		wg.Wait()
		settle = append(settle, time.Since(t0))
		won, lost := 0, 0
		for _, c := range codes {
			switch c {
			case http.StatusCreated:
				won++
			case http.StatusConflict:
				lost++
			}
		}
		if won != 1 || lost != clients-1 {
			return nil, fmt.Errorf("round %d: %d checkouts won and %d got 409 (want 1 and %d)", round+1, won, lost, clients-1)
		}
		if c := post(hc, base+"/v1/secrets/"+id+"/force-checkin", admin, []byte(`{"comment":"bench: next round"}`)); c != http.StatusOK {
			return nil, fmt.Errorf("round %d: force check-in: %d", round+1, c)
		}
	}
	return settle, nil
}

func post(hc *http.Client, target, token string, body []byte) int {
	req, _ := http.NewRequest("POST", target, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// successfulCheckouts counts the successful checkout audit records of id.
func successfulCheckouts(hc *http.Client, base, auditor, id string) (int, error) {
	n, cursor := 0, ""
	for {
		var page struct {
			Records []struct{ Outcome string } `json:"records"`
			Next    string                     `json:"next"`
		}
		if err := get(hc, base+"/v1/audit?secret="+id+"&action=secret.checkout&limit=1000&cursor="+url.QueryEscape(cursor), auditor, &page); err != nil {
			return 0, err
		}
		for _, r := range page.Records {
			if r.Outcome == "success" {
				n++
			}
		}
		if page.Next == "" {
			return n, nil
		}
		cursor = page.Next
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
