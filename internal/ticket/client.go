package ticket

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// DefaultTimeout bounds a whole call to a ticket system, retries included.
const DefaultTimeout = 5 * time.Second

// maxBody bounds an answer.
const maxBody = 4 << 20

// Client is an HTTP client for one ticket system that fails closed: a
// timeout for the whole call, retries with backoff on 429 and 503 within
// it, no redirect to another host, bounded and strictly decoded answers,
// and errors that never quote a credential or a body.
type Client struct {
	base    *url.URL
	http    *http.Client
	timeout time.Duration
	auth    func(*http.Request)
}

// NewClient returns a client for baseURL (https, or http on loopback for
// tests). auth, if set, authenticates each request. timeout 0 means
// DefaultTimeout.
func NewClient(baseURL string, hc *http.Client, timeout time.Duration, auth func(*http.Request)) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" || u.User != nil || (u.Scheme != "https" && !(u.Scheme == "http" && Loopback(u.Hostname()))) {
		// The URL is not quoted: it might carry a password.
		return nil, escrow.Errorf(escrow.CodeInvalid, "a ticket system URL must be an absolute https URL without credentials (http only on loopback)")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	if hc == nil {
		hc = &http.Client{}
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c := *hc
	host, scheme := u.Host, u.Scheme
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		// Another host, or a downgrade to http, would carry the credentials
		// where they must not go.
		if req.URL.Host != host || req.URL.Scheme != scheme {
			return errRedirect
		}
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		return nil
	}
	return &Client{base: u, http: &c, timeout: timeout, auth: auth}, nil
}

var errRedirect = errors.New("redirect to another host")

// Base returns the base URL.
func (c *Client) Base() *url.URL { return c.base }

// Do sends method path?query with body (JSON-encoded if not nil) and
// decodes a 2xx answer into out (if not nil). A 404 is ErrNotFound; see
// System for the other errors.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return escrow.Wrap(escrow.CodeInternal, err, "encode ticket system request")
		}
	}
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = query.Encode()
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(payload))
		if err != nil {
			return escrow.Wrap(escrow.CodeInternal, err, "build ticket system request")
		}
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.auth != nil {
			c.auth(req)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if errors.Is(err, errRedirect) {
				return escrow.Errorf(escrow.CodeInternal, "the ticket system redirected to another host; refusing")
			}
			if ctx.Err() != nil {
				return escrow.Errorf(escrow.CodeUnavailable, "the ticket system did not answer within %s", c.timeout)
			}
			return escrow.Errorf(escrow.CodeUnavailable, "the ticket system cannot be reached (%s)", describeNetErr(err))
		}
		data, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			wait := max(retryAfter(resp.Header.Get("Retry-After"), backoff, c.timeout), backoff)
			if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
				return escrow.Errorf(escrow.CodeUnavailable, "the ticket system is busy (HTTP %d) and did not recover within %s", resp.StatusCode, c.timeout)
			}
			select {
			case <-ctx.Done():
				return escrow.Errorf(escrow.CodeUnavailable, "the ticket system did not answer within %s", c.timeout)
			case <-time.After(wait):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return escrow.Errorf(escrow.CodeInternal, "the ticket system refused Escrow's credentials (HTTP %d)", resp.StatusCode)
		case resp.StatusCode == http.StatusNotFound:
			return escrow.ErrNotFound
		case resp.StatusCode >= 500:
			return escrow.Errorf(escrow.CodeUnavailable, "the ticket system failed (HTTP %d)", resp.StatusCode)
		case resp.StatusCode < 200 || resp.StatusCode > 299:
			return escrow.Errorf(escrow.CodeInternal, "the ticket system answered HTTP %d", resp.StatusCode)
		}
		if rerr != nil {
			return escrow.Errorf(escrow.CodeUnavailable, "the ticket system's answer was cut off")
		}
		if len(data) > maxBody {
			return escrow.Errorf(escrow.CodeInternal, "the ticket system's answer is larger than %d bytes", maxBody)
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return escrow.Errorf(escrow.CodeInternal, "the ticket system's answer is not the JSON its API documents")
		}
		return nil
	}
}

// retryAfter reads Retry-After (seconds, or an HTTP date); a wait it asks
// for beyond limit makes the caller give up rather than wait.
func retryAfter(h string, fallback, limit time.Duration) time.Duration {
	if h != "" {
		if s, err := strconv.Atoi(h); err == nil && s >= 0 {
			return time.Duration(s) * time.Second
		}
		if t, err := http.ParseTime(h); err == nil {
			return time.Until(t)
		}
		return limit + time.Second // unreadable: do not hammer
	}
	// Jitter keeps many clients from retrying in step.
	return fallback + time.Duration(rand.Int64N(int64(fallback/4)+1))
}

// Loopback reports whether host is localhost or a loopback address: the
// only place plain http is allowed (tests).
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func describeNetErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL may carry a query; keep only the cause
	}
	return fmt.Sprintf("%v", err)
}

// Basic returns an auth func for basic authentication or a bearer token.
func Basic(c Credentials) func(*http.Request) {
	return func(r *http.Request) {
		if c.Token != "" {
			r.Header.Set("Authorization", "Bearer "+c.Token)
			return
		}
		r.SetBasicAuth(c.Username, c.Password)
	}
}
