package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fastBackoff keeps retries quick in tests.
var fastBackoff = Backoff{Attempts: 4, First: time.Millisecond, Max: 4 * time.Millisecond}

func TestSendRetriesTransientFailures(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		bodies = append(bodies, string(b))
	}))
	defer srv.Close()
	m := Message{Kind: RolledBack, Namespace: "shop", Rollout: "checkout", Revision: "b", Reason: "error-rate failed"}
	if err := send(context.Background(), newHTTPClient(), Receiver{URL: srv.URL + "/hook", Format: FormatSlack}, m, fastBackoff); err != nil {
		t.Fatalf("send: %v", err)
	}
	if calls != 3 || len(bodies) != 1 {
		t.Fatalf("%d calls, %d bodies; want 3 and 1", calls, len(bodies))
	}
	var slack map[string]string
	if err := json.Unmarshal([]byte(bodies[0]), &slack); err != nil || !strings.Contains(slack["text"], "shop/checkout: rolled back (revision b): error-rate failed") {
		t.Errorf("slack body %s (%v)", bodies[0], err)
	}
}

func TestSendFollowsNoRedirect(t *testing.T) {
	reached := false
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	defer target.Close()
	srv := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer srv.Close()
	err := send(context.Background(), newHTTPClient(), Receiver{URL: srv.URL + "/hook"}, Message{Kind: Promoted}, fastBackoff)
	if err == nil || !errors.Is(err, errPermanent) || reached {
		t.Errorf("send through a redirect: err %v, target reached %v; want a permanent error and no visit", err, reached)
	}
}

func TestSendGivesUpAndNeverNamesTheURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	url := srv.URL + "/secret-token-123"
	err := send(context.Background(), newHTTPClient(), Receiver{URL: url}, Message{Kind: Promoted}, fastBackoff)
	if err == nil || !strings.Contains(err.Error(), "4 attempts") {
		t.Errorf("err %v, want it to give up after 4 attempts", err)
	}
	srv.Close()
	err = send(context.Background(), newHTTPClient(), Receiver{URL: url}, Message{Kind: Promoted}, fastBackoff)
	if err == nil || strings.Contains(err.Error(), "secret-token-123") {
		t.Errorf("err %v: want a failure that does not name the URL", err)
	}
}

func TestAllowed(t *testing.T) {
	prefixes := []string{"https://hooks.slack.com/services/", "http://127.0.0.1:8080/"}
	cases := map[string]bool{
		"https://hooks.slack.com/services/T0/B0/x":           true,
		"http://127.0.0.1:8080/hook":                         true,
		"https://hooks.slack.com.evil.com/services":          false,
		"https://evil.com/https://hooks.slack.com/services/": false,
		"http://127.0.0.1:8081/hook":                         false,
		"ftp://hooks.slack.com/services/":                    false,
		"not a url":                                          false,
	}
	for raw, ok := range cases {
		if err := allowed(raw, prefixes); (err == nil) != ok {
			t.Errorf("allowed(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
}

func TestBackoffDoubles(t *testing.T) {
	b := Backoff{Attempts: 6, First: time.Second, Max: 5 * time.Second}
	var got []time.Duration
	for n := 1; n <= 5; n++ {
		got = append(got, b.delay(n))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
}
