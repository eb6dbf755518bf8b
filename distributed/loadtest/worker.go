package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/fakeidp"
)

// workerEnv holds a worker process's configuration (JSON); the coordinator
// re-executes its own binary with it.
const workerEnv = "MSALCACHE_LOADTEST_WORKER"

// Identities registered with the identity provider.
const (
	webClientID = "0a0a0a0a-1111-4111-8111-00000000100a"
	webSecret   = "loadtest-web-secret"
	redirectURI = "https://app.example/auth/callback"
	daemonID    = "0d0d0d0d-3333-4333-8333-00000000100d"
	daemonKey   = "loadtest-daemon-secret"
)

var (
	userScope   = []string{fakeidp.MeScope}
	daemonScope = []string{"api://downstream/.default"}
)

// callTimeout bounds one MSAL call: generous, the machine may be loaded.
const callTimeout = 30 * time.Second

// workerConfig is what a worker process is told.
type workerConfig struct {
	ID          int
	RedisURL    string
	PostgresURL string // --tandem: the second layer
	Prefix      string
	Key         []byte // the Cache's encryption key
	CertPEM     []byte // the identity provider's certificate
	Authority   string
	Accounts    []confidential.Account
	Tenants     []string
	Goroutines  int
	Timeline    bool // count the calls per second too
}

// workerResult is what a worker reports, as one JSON line on stdout.
type workerResult struct {
	WarmFailures int64
	All, Down    *phase
	Errors       []string
	Stats        distributed.Stats
	Timeline     *timeline // per second since "go", when asked for
}

// The lines on a worker's stdin (from the coordinator) and stdout.
const (
	lineReady  = "ready"
	lineGo     = "go"
	lineDown   = "down"
	lineUp     = "up"
	lineStop   = "stop"
	lineUsers  = "users " // and the JSON of more accounts to use
	resultLine = "result "
)

// workerMain runs a worker process: it reads its configuration, warms its
// shared clients (each user and tenant once), says ready, and calls until
// told to stop; then it prints its result.
func workerMain() int {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(os.Getenv(workerEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest worker:", err)
		return exitFailed
	}
	res, err := work(cfg, bufio.NewScanner(os.Stdin), os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadtest worker %d: %v\n", cfg.ID, err)
		return exitFailed
	}
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest worker:", err)
		return exitFailed
	}
	fmt.Fprintf(os.Stdout, "%s%s\n", resultLine, b)
	return exitOK
}

// caller makes the calls of one process and counts them.
type caller struct {
	web, daemon confidential.Client
	accounts    atomic.Pointer[[]confidential.Account] // replaced, never changed
	tenants     []string
	tids        []string // the tid of each tenant's tokens, learnt in the warm-up

	mu     sync.Mutex
	errors []string
}

func work(cfg workerConfig, in *bufio.Scanner, out *os.File) (*workerResult, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	log = log.With("worker", cfg.ID)
	store, err := openStore(cfg.RedisURL, cfg.PostgresURL)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	c, err := distributed.New(store, distributed.WithEncryptionKeys(cfg.Key),
		distributed.WithKeyPrefix(cfg.Prefix), distributed.WithLogger(log))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	httpClient, err := fakeidp.ClientFromPEM(cfg.CertPEM)
	if err != nil {
		return nil, err
	}
	cl := &caller{tenants: cfg.Tenants, tids: make([]string, len(cfg.Tenants))}
	cl.accounts.Store(&cfg.Accounts)
	if cl.web, err = newClient(cfg.Authority, webClientID, webSecret, httpClient, c); err != nil {
		return nil, err
	}
	if cl.daemon, err = newClient(cfg.Authority, daemonID, daemonKey, httpClient, c); err != nil {
		return nil, err
	}

	res := &workerResult{All: newPhase(), Down: newPhase()}
	warm := newPhase()
	for i := range cfg.Accounts {
		cl.silent(i, warm)
	}
	for i := range cl.tenants {
		cl.credential(i, warm)
	}
	res.WarmFailures = warm.Failures
	fmt.Fprintln(out, lineReady)
	if !in.Scan() || in.Text() != lineGo {
		return nil, errors.New("the coordinator did not say go")
	}

	began := time.Now()
	res.Timeline = newTimeline(began)
	var down, stop atomic.Bool
	control := newPhase() // failures to read the coordinator's lines
	go func() {
		for in.Scan() {
			switch in.Text() {
			case lineDown:
				down.Store(true)
			case lineUp:
				down.Store(false)
			case lineStop:
				stop.Store(true)
			default:
				if js, ok := strings.CutPrefix(in.Text(), lineUsers); ok {
					var more []confidential.Account
					if err := json.Unmarshal([]byte(js), &more); err != nil {
						cl.fail(control, "the coordinator's users line: %v", err)
						continue
					}
					all := append(append([]confidential.Account(nil), *cl.accounts.Load()...), more...)
					cl.accounts.Store(&all)
				}
			}
		}
		stop.Store(true) // stdin closed: the coordinator is gone
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range cfg.Goroutines {
		wg.Go(func() {
			all, dn := newPhase(), newPhase()
			if cfg.Timeline {
				all.tl = newTimeline(began)
				dn.tl = all.tl
			}
			for n := 0; !stop.Load(); n++ {
				p := all
				if down.Load() {
					p = dn
				}
				if len(cl.tenants) > 0 && n%8 == 7 {
					cl.credential(rand.IntN(len(cl.tenants)), p)
				} else {
					cl.silent(rand.IntN(len(*cl.accounts.Load())), p)
				}
			}
			mu.Lock()
			res.All.merge(all)
			res.All.merge(dn)
			res.Down.merge(dn)
			res.Timeline.merge(all.tl)
			mu.Unlock()
		})
	}
	wg.Wait()
	cl.mu.Lock()
	res.WarmFailures += control.Failures
	res.Errors = cl.errors
	cl.mu.Unlock()
	res.Stats = c.Stats()
	return res, nil
}

func newClient(authority, id, secret string, hc *http.Client, c *distributed.Cache) (confidential.Client, error) {
	cred, err := confidential.NewCredFromSecret(secret)
	if err != nil {
		return confidential.Client{}, err
	}
	return confidential.New(authority, id, cred,
		confidential.WithInstanceDiscovery(false), confidential.WithHTTPClient(hc), confidential.WithCache(c))
}

// silent gets user i's token from the cache, as a web app's page does.
func (cl *caller) silent(i int, p *phase) {
	a := (*cl.accounts.Load())[i]
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	start := time.Now()
	res, err := cl.web.AcquireTokenSilent(ctx, userScope, confidential.WithSilentAccount(a))
	p.observe(start)
	switch {
	case err != nil:
		cl.fail(p, "silent call for user %d: %v", i, err)
	case res.Account.HomeAccountID != a.HomeAccountID:
		cl.fail(p, "silent call for user %d returned another user's token", i)
	}
}

// credential gets tenant i's app token, as a daemon does.
func (cl *caller) credential(i int, p *phase) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	start := time.Now()
	res, err := cl.daemon.AcquireTokenByCredential(ctx, daemonScope, confidential.WithTenantID(cl.tenants[i]))
	p.observe(start)
	if err != nil {
		cl.fail(p, "client credentials for tenant %s: %v", cl.tenants[i], err)
		return
	}
	tid := tidOf(res.AccessToken)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch {
	case tid == "":
		cl.failLocked(p, "client credentials for tenant %s: a token without tid", cl.tenants[i])
	case cl.tids[i] == "":
		cl.tids[i] = tid
	case cl.tids[i] != tid:
		cl.failLocked(p, "client credentials for tenant %s returned another tenant's token", cl.tenants[i])
	}
}

func (cl *caller) fail(p *phase, format string, args ...any) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.failLocked(p, format, args...)
}

func (cl *caller) failLocked(p *phase, format string, args ...any) {
	p.failure()
	if len(cl.errors) < 3 {
		cl.errors = append(cl.errors, fmt.Sprintf(format, args...))
	}
}

// tidOf returns the tid claim of a JWT, without checking it (the local
// identity provider does not sign its tokens).
func tidOf(jwt string) string {
	parts := strings.Split(jwt, ".")
	if len(parts) < 2 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		TID string `json:"tid"`
	}
	if json.Unmarshal(b, &claims) != nil {
		return ""
	}
	return claims.TID
}
