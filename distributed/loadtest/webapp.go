package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/appkey"
	"github.com/msalcache/msalcache/internal/fakeidp"
)

const modeWebApp = "two examples/web-app replicas over HTTP on Redis"

// The web app's registration. Its token cache uses the distributed cache's
// default prefix and the key appkey derives for appkey.Tokens.
const (
	webAppID     = "0a0a0a0a-1111-4111-8111-00000000200a"
	webAppSecret = "loadtest-web-app-secret"
)

// Bounds of the waits for the web app.
const (
	buildTimeout   = 5 * time.Minute
	replicaTimeout = time.Minute
	pageTimeout    = 30 * time.Second
)

// runWebApp builds examples/web-app, runs two replicas of it on one Redis,
// signs the users in over HTTP, and has --procs × --goroutines goroutines
// of this process load the /me page of replica A and B in turn, each
// request as a random signed-in user (their own cookie jar). Redis is
// killed in the middle as in the default mode.
func runWebApp(ctx context.Context, o options, stderr io.Writer) (*report, error) {
	e, stop, err := setUp(o)
	if err != nil {
		return nil, err
	}
	defer stop()
	r := newReport(modeWebApp)
	r.workers = fmt.Sprintf("2 replicas, %d request goroutines, %d users", o.procs*o.goroutines, o.users)
	r.partitions = -1

	bin := filepath.Join(e.dir, "web-app")
	bctx, cancel := context.WithTimeout(ctx, buildTimeout)
	build := exec.CommandContext(bctx, "go", "build", "-o", bin, "github.com/msalcache/msalcache/examples/web-app")
	build.Stdout, build.Stderr = stderr, stderr
	err = build.Run()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("building examples/web-app (run the command inside the module): %w", err)
	}
	caFile := filepath.Join(e.dir, "idp.pem")
	if err := os.WriteFile(caFile, e.idp.CertPEM(), 0o600); err != nil {
		return nil, err
	}
	var urls []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		urls = append(urls, "http://"+l.Addr().String())
		l.Close()
	}
	if err := e.idp.RegisterClient(fakeidp.ConfidentialClient{
		ID: webAppID, Secret: webAppSecret, RedirectURIs: []string{urls[0] + "/callback", urls[1] + "/callback"},
	}); err != nil {
		return nil, err
	}
	var replicas []*exec.Cmd
	defer func() { stopReplicas(replicas) }()
	for i, u := range urls {
		cmd := exec.Command(bin, "serve", "--client-id", webAppID, "--authority", e.idp.Authority(),
			"--ca-file", caFile, "--store", "redis", "--redis", e.redisURL,
			"--addr", strings.TrimPrefix(u, "http://"), "--redirect-url", u+"/callback",
			"--scopes", fakeidp.MeScope, "--api-url", e.idp.MeURL(), "--name", string(rune('A'+i)))
		cmd.Env = append(os.Environ(), "WEBAPP_CLIENT_SECRET="+webAppSecret,
			"WEBAPP_KEY="+base64.StdEncoding.EncodeToString(e.key))
		// A replica logs every sign-in: its log goes to a file, shown
		// (its end) only when the run is not clean.
		logPath := filepath.Join(e.dir, "replica-"+string(rune('A'+i))+".log")
		logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = sysProcAttr()
		err = cmd.Start()
		logFile.Close()
		if err != nil {
			return nil, fmt.Errorf("starting replica %d: %w", i, err)
		}
		replicas = append(replicas, cmd)
		defer func() {
			if r.clean() {
				return
			}
			log, _ := os.ReadFile(logPath)
			fmt.Fprintf(stderr, "loadtest: the end of replica %c's log:\n%s\n", 'A'+i, tail(log))
		}()
	}
	transport := &http.Transport{MaxIdleConnsPerHost: o.procs * o.goroutines, IdleConnTimeout: time.Minute}
	defer transport.CloseIdleConnections()
	for _, u := range urls {
		if err := awaitHealthy(ctx, transport, u); err != nil {
			return nil, err
		}
	}

	users := make([]*webUser, o.users)
	partitions := map[string]bool{}
	errs := make([]error, o.users)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(users); i = int(next.Add(1) - 1) {
				users[i], errs[i] = signInWeb(e.idp, transport, urls[i%2], fmt.Sprintf("user%05d@%s", i, fakeidp.UserDomain))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, u := range users {
		partitions[u.home] = true
	}
	before := e.idp.Requests()

	var down, done atomic.Bool
	var mu sync.Mutex
	start := time.Now()
	for range o.procs * o.goroutines {
		wg.Go(func() {
			all, dn := newPhase(), newPhase()
			if o.report != "" {
				all.tl = newTimeline(start)
				dn.tl = all.tl
			}
			for n := 0; !done.Load(); n++ {
				p := all
				if down.Load() {
					p = dn
				}
				u := users[rand.IntN(len(users))]
				if err := u.page(urls[n%2], p); err != nil {
					mu.Lock()
					if len(r.errors) < 5 {
						r.errors = append(r.errors, err.Error())
					}
					mu.Unlock()
				}
			}
			mu.Lock()
			r.all.merge(all)
			r.all.merge(dn)
			r.down.merge(dn)
			r.timeline.merge(all.tl)
			mu.Unlock()
		})
	}
	outageErr := func() error {
		if o.outage <= 0 {
			if o.redisURL != "" {
				r.outage = "none (an external Redis is not killed)"
			} else {
				r.outage = "none (--outage 0)"
			}
			return nil
		}
		if !sleep(ctx, (o.duration-o.outage)/2) {
			return ctx.Err()
		}
		down.Store(true)
		if err := e.redis.Kill(); err != nil {
			return err
		}
		killed := time.Now()
		if !sleep(ctx, o.outage) {
			return ctx.Err()
		}
		if err := e.redis.Restart(ctx); err != nil {
			return err
		}
		back := time.Now()
		down.Store(false)
		r.events = append(r.events, event{"Redis down", killed.Sub(start), back.Sub(start)})
		r.outage = fmt.Sprintf("redis-server killed (SIGKILL) at %.1f s, back at %.1f s (down %.1f s)",
			killed.Sub(start).Seconds(), back.Sub(start).Seconds(), back.Sub(killed).Seconds())
		return nil
	}()
	if outageErr == nil {
		sleep(ctx, o.duration-time.Since(start))
	}
	done.Store(true)
	wg.Wait()
	r.elapsed = time.Since(start)
	if outageErr != nil {
		return nil, outageErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lost := e.idp.Requests().Sub(before)
	r.tokenRequests = lost.Token
	r.byGrant = fmt.Sprintf(": refresh %d, auth code %d", lost.RefreshTokenGrant, lost.AuthorizationCodeGrant)

	tokenKey := appkey.Derive([][]byte{e.key}, appkey.Tokens)[0]
	ictx, icancel := context.WithTimeout(ctx, time.Minute)
	defer icancel()
	in, err := inspect(ictx, e.redisURL, distributed.DefaultKeyPrefix, tokenKey, partitions)
	if err != nil {
		return r, fmt.Errorf("reading the stored partitions: %w", err)
	}
	r.partitions, r.foreign, r.unknown, r.missing = in.partitions, in.foreign, in.unknown, in.missing
	return r, nil
}

// awaitHealthy waits until the replica at u answers /healthz.
func awaitHealthy(ctx context.Context, t http.RoundTripper, u string) error {
	c := &http.Client{Transport: t, Timeout: 2 * time.Second}
	deadline := time.Now().Add(replicaTimeout)
	for {
		resp, err := c.Get(u + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the replica at %s did not answer /healthz within %v", u, replicaTimeout)
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// stopReplicas sends SIGTERM (a graceful shutdown), then kills those still
// running after a while.
func stopReplicas(cmds []*exec.Cmd) {
	for _, c := range cmds {
		if c.Process.Signal(syscall.SIGTERM) != nil {
			_ = c.Process.Kill() // no SIGTERM on Windows
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range cmds {
		exited := make(chan struct{})
		go func() {
			_ = c.Wait()
			close(exited)
		}()
		select {
		case <-exited:
		case <-time.After(time.Until(deadline)):
			_ = c.Process.Kill()
			<-exited
		}
	}
}

// webUser is a signed-in user's browser: a cookie jar with the session.
type webUser struct {
	name, home string
	c          *http.Client
}

// signInWeb signs username in on the replica at u, as a browser does:
// /signin redirects to the identity provider, whose sign-in form sends the
// browser back to /callback with a code.
func signInWeb(idp *fakeidp.Server, t http.RoundTripper, u, username string) (*webUser, error) {
	user, err := idp.AddUser(idp.Tenant(), username)
	if err != nil {
		return nil, err
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	w := &webUser{name: username, home: user.HomeAccountID, c: &http.Client{
		Transport: t, Jar: jar, Timeout: pageTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	status, loc, _, err := w.get(u + "/signin")
	if err != nil {
		return nil, err
	}
	if status != http.StatusFound || !strings.HasPrefix(loc, idp.Authority()) {
		return nil, fmt.Errorf("%s/signin: %d to %q, want a redirect to the identity provider", u, status, loc)
	}
	cb, err := idp.SignIn(loc, username)
	if err != nil {
		return nil, err
	}
	status, loc, _, err = w.get(cb.String())
	if err != nil {
		return nil, err
	}
	if status != http.StatusSeeOther || loc != "/" {
		return nil, fmt.Errorf("%s/callback: %d to %q, want a redirect home", u, status, loc)
	}
	return w, nil
}

func (w *webUser) get(u string) (status int, location, body string, err error) {
	resp, err := w.c.Get(u)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b), err
}

// page gets the /me page of the replica at u: a silent token from the
// shared cache and a call of the downstream API, which must name the user.
func (w *webUser) page(u string, p *phase) error {
	start := time.Now()
	status, _, body, err := w.get(u + "/me")
	p.observe(start)
	switch {
	case err != nil:
	case status != http.StatusOK:
		err = fmt.Errorf("%s/me for %s: status %d", u, w.name, status)
	case !strings.Contains(body, ">"+w.name+"<"):
		err = fmt.Errorf("%s/me for %s: the page does not name the user", u, w.name)
	}
	if err != nil {
		p.failure()
	}
	return err
}

// tail returns the end of a log.
func tail(log []byte) string {
	const n = 2000
	if len(log) > n {
		log = log[len(log)-n:]
	}
	return string(log)
}
