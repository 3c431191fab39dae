package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strings"
	"time"
)

// Format is the body a receiver gets.
type Format string

// Body formats.
const (
	// FormatJSON posts Message as JSON.
	FormatJSON Format = "json"
	// FormatSlack posts {"text": Message.Text()}, which Slack's incoming
	// webhooks (and Mattermost's, Discord's /slack endpoint) accept.
	FormatSlack Format = "slack"
)

// Receiver is where one namespace's notifications go.
type Receiver struct {
	URL    string
	Format Format
}

// body encodes m for the receiver.
func (r Receiver) body(m Message) ([]byte, error) {
	switch r.Format {
	case FormatJSON, "":
		return json.Marshal(m)
	case FormatSlack:
		return json.Marshal(map[string]string{"text": m.Text()})
	}
	return nil, fmt.Errorf("unknown notification format %q: want json or slack", r.Format)
}

// Backoff is a retry schedule: Attempts tries, the first retry after First,
// each next one twice as late, at most Max apart.
type Backoff struct {
	Attempts   int
	First, Max time.Duration
}

// DefaultBackoff tries 6 times over about half a minute.
var DefaultBackoff = Backoff{Attempts: 6, First: 500 * time.Millisecond, Max: 16 * time.Second}

// delay is the wait before retry n (1-based).
func (b Backoff) delay(n int) time.Duration {
	d := b.First
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// newHTTPClient returns a client that follows no redirect: a receiver URL
// is allowed by its prefix, and a redirect would leave that prefix.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// errPermanent marks a failure that retrying cannot fix.
var errPermanent = errors.New("not retried")

// send posts m to r, retrying transient failures (network errors, 429 and
// 5xx answers) with backoff until ctx ends.
func send(ctx context.Context, c *http.Client, r Receiver, m Message, b Backoff) error {
	body, err := r.body(m)
	if err != nil {
		return err
	}
	var last error
	for attempt := 1; attempt <= b.Attempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(b.delay(attempt - 1))
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
			case <-t.C:
			}
		}
		last = post(ctx, c, r.URL, body)
		if last == nil || errors.Is(last, errPermanent) {
			return last
		}
	}
	return fmt.Errorf("%d attempts: %w", b.Attempts, last)
}

func post(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-notify")
	resp, err := c.Do(req)
	if err != nil {
		// The URL is a secret: say what failed without it.
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			return fmt.Errorf("post to the receiver: %w", uerr.Err)
		}
		return errors.New("post to the receiver failed")
	}
	defer resp.Body.Close()
	snippet, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		snippet = nil // the status says enough
	}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code >= 300 && code < 400:
		return fmt.Errorf("%w: the receiver answered %s (redirects are not followed)", errPermanent, resp.Status)
	case code == http.StatusTooManyRequests || code >= 500:
		return fmt.Errorf("the receiver answered %s: %s", resp.Status, strings.TrimSpace(string(snippet)))
	default:
		return fmt.Errorf("%w: the receiver answered %s: %s", errPermanent, resp.Status, strings.TrimSpace(string(snippet)))
	}
}
