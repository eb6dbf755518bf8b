package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/testdir"
)

const (
	testClientID = "6f1d2c3b-4a5e-4f60-8b7c-9d0e1f2a3b4c"
	testSecret   = "test-client-secret-b7f3c9e1d5a2"
	testScope    = fakeidp.MeScope
)

// site is the local identity provider and two replicas of the web app, in
// this process, on one store (a memory store, or Redis).
type site struct {
	idp      *fakeidp.Server
	caFile   string
	keys     [][]byte
	replicas [2]*replica
	logs     *syncBuffer // both replicas' logs
}

type replica struct {
	srv *server
	url string
}

// newSite starts the identity provider and two replicas, A and B. With
// redisURL empty they share one memory store; otherwise each has its own
// connection to Redis.
func newSite(t testing.TB, redisURL string) *site {
	t.Helper()
	idp, err := fakeidp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	s := &site{idp: idp, caFile: filepath.Join(testdir.New(t), "idp.pem"), keys: [][]byte{randomKey()}, logs: &syncBuffer{}}
	if err := os.WriteFile(s.caFile, idp.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	var shared distributed.Store
	storeOpts := storeOptions{store: "redis", redisURL: redisURL}
	if redisURL == "" {
		shared = distributed.NewMemoryStore()
		t.Cleanup(func() { shared.Close() })
		storeOpts = storeOptions{store: "memory"}
	}
	var lns [2]net.Listener
	var redirects []string
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		redirects = append(redirects, "http://"+lns[i].Addr().String()+"/callback")
	}
	if err := idp.RegisterClient(fakeidp.ConfidentialClient{ID: testClientID, Secret: testSecret, RedirectURIs: redirects}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	for i, name := range []string{"A", "B"} {
		so := serveOptions{
			app:         appOptions{clientID: testClientID, authority: idp.Authority(), clientSecret: testSecret, caFile: s.caFile},
			store:       storeOpts,
			redirectURL: redirects[i],
			scopes:      testScope,
			apiURL:      idp.MeURL(),
			name:        name,
		}
		srv, closeSrv, err := newServerOn(&so, s.keys, log, shared)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeSrv() })
		s.replicas[i] = &replica{srv: srv, url: "http://" + lns[i].Addr().String()}
		wg.Go(func() { serveUntil(ctx, lns[i], srv.routes(), "", "") })
	}
	return s
}

func (s *site) a() *replica { return s.replicas[0] }
func (s *site) b() *replica { return s.replicas[1] }

// browser is an HTTP client with a cookie jar that trusts the identity
// provider and does not follow redirects by itself.
type browser struct {
	t   testing.TB
	c   *http.Client
	jar *cookiejar.Jar
}

func (s *site) newBrowser(t testing.TB) *browser {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := s.idp.HTTPClient()
	c := &http.Client{Transport: hc.Transport, Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{t: t, c: c, jar: jar}
}

// response is a page as the browser got it.
type response struct {
	status   int
	location string
	body     string
}

func (b *browser) do(method, u string, form url.Values) response {
	b.t.Helper()
	r, err := b.doErr(method, u, form)
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

// doErr is do for any goroutine: it returns the error.
func (b *browser) doErr(method, u string, form url.Values) (response, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return response{}, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(raw)}, err
}

func (b *browser) get(u string) response { b.t.Helper(); return b.do(http.MethodGet, u, nil) }

// cookie returns the value of the browser's cookie name for u.
func (b *browser) cookie(u, name string) string {
	pu, _ := url.Parse(u)
	for _, c := range b.jar.Cookies(pu) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// setCookie puts a cookie in the browser's jar for u.
func (b *browser) setCookie(u, name, value string) {
	pu, _ := url.Parse(u)
	b.jar.SetCookies(pu, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// title returns the page's title element's text.
func (r response) title() string {
	_, after, ok := strings.Cut(r.body, `<h1 id="title">`)
	if !ok {
		return ""
	}
	t, _, _ := strings.Cut(after, "</h1>")
	return htmlUnescape(t)
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'").Replace(s)
}

// noLeaks fails the test if the logs hold a secret or a token.
func noLeaks(t *testing.T, what string, logs []byte, secrets ...string) {
	t.Helper()
	if jwtLike.Match(logs) {
		t.Errorf("%s hold a token: %s", what, jwtLike.Find(logs))
	}
	for _, s := range secrets {
		if s != "" && bytes.Contains(logs, []byte(s)) {
			t.Errorf("%s hold a secret (%.6s...)", what, s)
		}
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
