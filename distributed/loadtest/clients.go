package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/pgserver"
	"github.com/msalcache/msalcache/internal/redisserver"
)

const (
	modeClients = "MSAL Go confidential clients (one shared client per process) on Redis"
	modeTandem  = "MSAL Go confidential clients (one shared client per process) on distributed.Tiered(Redis, PostgreSQL)"
)

// Bounds of the coordinator's waits, beyond the run's duration.
const (
	readyTimeout     = 3 * time.Minute // sign-in and warm-up of every worker
	resultTimeout    = 2 * time.Minute // results after "stop"
	writeBackTimeout = time.Minute     // kept writes in the store after the outage
)

// workerPrefix is the key prefix the workers are given: the run's own, but
// for the test that makes the workers miss every token.
var workerPrefix = func(prefix string) string { return prefix }

// env is what the coordinator sets up: the identity provider, Redis, and
// the key and prefix of the run's partitions.
type env struct {
	dir      string
	idp      *fakeidp.Server
	redis    *redisserver.Server // nil: an external Redis
	redisURL string
	pg       *pgserver.Server // --tandem only
	pgURL    string
	prefix   string
	key      []byte
}

// setUp starts the identity provider and (unless o.redisURL) redis-server.
// The returned func stops them and removes what they left.
func setUp(o options) (*env, func(), error) {
	e := &env{redisURL: o.redisURL, key: make([]byte, 32)}
	rand.Read(e.key)
	e.prefix = "msalcache-loadtest-" + hex.EncodeToString(e.key[:4]) + ":"
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	dir, err := os.MkdirTemp("", "msalcache-loadtest-")
	if err != nil {
		return nil, nil, err
	}
	e.dir = dir
	stops = append(stops, func() { os.RemoveAll(dir) })
	if e.redisURL == "" {
		// With --tandem, Redis runs without persistence: PostgreSQL keeps
		// the partitions.
		e.redis, err = redisserver.Start(context.Background(), redisserver.Config{Dir: dir, AppendOnly: !o.tandem})
		if errors.Is(err, redisserver.ErrNotInstalled) {
			err = errors.New("redis-server is not on PATH: install the Debian package redis-server, or pass --redis URL")
		}
		if err != nil {
			stop()
			return nil, nil, err
		}
		e.redisURL = e.redis.URL()
		stops = append(stops, func() { _ = e.redis.Stop() })
	} else {
		stops = append(stops, func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = deleteKeys(ctx, e.redisURL, e.prefix)
		})
	}
	if o.tandem {
		if e.pg, err = pgserver.Start(context.Background(), pgserver.Config{}); err != nil {
			stop()
			return nil, nil, err
		}
		e.pgURL = e.pg.URL()
		stops = append(stops, func() { _ = e.pg.Stop() })
	}
	if e.idp, err = fakeidp.Start(); err != nil {
		stop()
		return nil, nil, err
	}
	stops = append(stops, e.idp.Close)
	for _, c := range []fakeidp.ConfidentialClient{
		{ID: webClientID, Secret: webSecret, RedirectURIs: []string{redirectURI}},
		{ID: daemonID, Secret: daemonKey},
	} {
		if err := e.idp.RegisterClient(c); err != nil {
			stop()
			return nil, nil, err
		}
	}
	return e, stop, nil
}

// runClients is the default mode: worker processes of MSAL clients.
func runClients(ctx context.Context, o options, stderr io.Writer) (*report, error) {
	e, stop, err := setUp(o)
	if err != nil {
		return nil, err
	}
	defer stop()
	r := newReport(modeClients)
	if o.tandem {
		r.mode = modeTandem
	}
	r.workers = fmt.Sprintf("%d processes × %d goroutines, %d users, %d daemon tenants", o.procs, o.goroutines, o.users, o.tenants)
	r.partitions = -1

	tenants := make([]string, o.tenants)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("tenant-%03d", i)
		if _, err := e.idp.AddTenant(tenants[i]); err != nil {
			return nil, err
		}
	}
	sg, err := newSigner(e)
	if err != nil {
		return nil, err
	}
	defer sg.close()
	accounts, err := sg.signIn(ctx, 0, o.users)
	if err != nil {
		return nil, err
	}
	tids, err := sg.firstTokens(ctx, tenants)
	if err != nil {
		return nil, err
	}
	partitions := map[string]bool{}
	for _, a := range accounts {
		partitions[a.HomeAccountID] = true
	}
	for i, t := range tenants {
		// MSAL Go names an app partition <client>_<tenant>_AppTokenCache;
		// the tenant may be the name or the ID.
		partitions[daemonID+"_"+t+"_AppTokenCache"] = false
		partitions[daemonID+"_"+tids[i]+"_AppTokenCache"] = false
	}
	before := e.idp.Requests()

	cfg := workerConfig{
		RedisURL: e.redisURL, PostgresURL: e.pgURL, Prefix: workerPrefix(e.prefix), Key: e.key, CertPEM: e.idp.CertPEM(),
		Authority: e.idp.Authority(), Accounts: accounts, Tenants: tenants, Goroutines: o.goroutines,
		Timeline: o.report != "",
	}
	ws, err := startWorkers(ctx, o.procs, cfg, stderr)
	defer ws.stop()
	if err != nil {
		return nil, err
	}
	if err := ws.awaitReady(ctx); err != nil {
		return nil, err
	}

	expected := 0 // token requests of the sign-ins during the outage
	start := time.Now()
	ws.send(lineGo)
	if o.tandem {
		late, n, err := tandemFaults(ctx, o, e, ws, sg, r, start)
		if err != nil {
			return nil, err
		}
		expected = n
		for _, a := range late {
			partitions[a.HomeAccountID] = true
		}
		accounts = append(accounts, late...)
	} else if o.outage > 0 {
		killAt := (o.duration - o.outage) / 2
		if !sleep(ctx, killAt) {
			return nil, ctx.Err()
		}
		ws.send(lineDown)
		if err := e.redis.Kill(); err != nil {
			return nil, err
		}
		down := time.Now()
		// Users who sign in now get tokens that the store cannot take:
		// the signer's Cache keeps them and writes them back when Redis
		// returns; the workers are then given these users too.
		late, err := sg.signIn(ctx, o.users, o.users+lateUsers(o))
		if err != nil {
			return nil, err
		}
		for i := range late {
			expected += e.idp.UserRequests(e.idp.Tenant(), username(o.users+i)).Token
		}
		if !sleep(ctx, o.outage-time.Since(down)) {
			return nil, ctx.Err()
		}
		if err := e.redis.Restart(ctx); err != nil {
			return nil, err
		}
		back := time.Now()
		ws.send(lineUp)
		r.events = append(r.events, event{"Redis down", down.Sub(start), back.Sub(start)})
		wb, err := sg.writtenBack(ctx, back)
		if err != nil {
			return nil, err
		}
		// The workers are given these users at once: a Cache asks the
		// store for a partition it does not hold even before its own
		// probe has seen the store back.
		b, err := json.Marshal(late)
		if err != nil {
			return nil, err
		}
		ws.send(lineUsers + string(b))
		for _, a := range late {
			partitions[a.HomeAccountID] = true
		}
		accounts = append(accounts, late...)
		r.outage = fmt.Sprintf("redis-server killed (SIGKILL) at %.1f s, back at %.1f s (down %.1f s)",
			down.Sub(start).Seconds(), back.Sub(start).Seconds(), back.Sub(down).Seconds())
		r.late = fmt.Sprintf("%d users signed in while Redis was down; their tokens were written back %v after it returned, and the workers were given these users then",
			len(late), round(wb))
	} else if o.redisURL != "" {
		r.outage = "none (an external Redis is not killed)"
	} else {
		r.outage = "none (--outage 0)"
	}
	if !sleep(ctx, o.duration-time.Since(start)) {
		return nil, ctx.Err()
	}
	ws.send(lineStop)
	results, err := ws.results(ctx)
	r.elapsed = time.Since(start)
	if err != nil {
		return nil, err
	}
	for _, res := range results {
		r.warmFailures += res.WarmFailures
		r.all.merge(res.All)
		r.down.merge(res.Down)
		r.errors = append(r.errors, res.Errors...)
		r.timeline.merge(res.Timeline)
		addStats(&r.stats, res.Stats)
	}
	if len(r.errors) > 5 {
		r.errors = r.errors[:5]
	}
	if r.signedOut, err = signedOut(ctx, e, accounts); err != nil {
		return nil, fmt.Errorf("a new replica after the run: %w", err)
	}
	r.users = len(accounts)
	lost := e.idp.Requests().Sub(before)
	lost.Token -= expected
	lost.AuthorizationCodeGrant -= expected
	r.tokenRequests = lost.Token
	if expected > 0 {
		r.byGrant = fmt.Sprintf(" other than the %d of the sign-ins during the outage", expected)
	}
	r.byGrant += fmt.Sprintf(": refresh %d, auth code %d, client credentials %d",
		lost.RefreshTokenGrant, lost.AuthorizationCodeGrant, lost.ClientCredentialsGrant)

	ictx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var in inspection
	if o.tandem {
		r.inspected = "PostgreSQL"
		in, err = inspectPostgres(ictx, e.pgURL, e.prefix, e.key, partitions)
	} else {
		in, err = inspect(ictx, e.redisURL, e.prefix, e.key, partitions)
	}
	if err != nil {
		return r, fmt.Errorf("reading the stored partitions: %w", err)
	}
	r.partitions, r.foreign, r.unknown, r.missing = in.partitions, in.foreign, in.unknown, in.missing
	return r, nil
}

// lateUsers is how many users sign in during the outage.
func lateUsers(o options) int { return max(1, o.users/10) }

// signer is the coordinator's own client, on its own Cache: it signs users
// in with the authorization code flow and gets each tenant's first app
// token, so that the tokens are in Redis before the workers need them.
type signer struct {
	idp         *fakeidp.Server
	store       distributed.Store
	cache       *distributed.Cache
	web, daemon confidential.Client
}

func newSigner(e *env) (*signer, error) {
	store, err := openStore(e.redisURL, e.pgURL)
	if err != nil {
		return nil, err
	}
	s := &signer{idp: e.idp, store: store}
	if s.cache, err = distributed.New(store, distributed.WithEncryptionKeys(e.key), distributed.WithKeyPrefix(e.prefix)); err != nil {
		store.Close()
		return nil, err
	}
	if s.web, err = newClient(e.idp.Authority(), webClientID, webSecret, e.idp.HTTPClient(), s.cache); err == nil {
		s.daemon, err = newClient(e.idp.Authority(), daemonID, daemonKey, e.idp.HTTPClient(), s.cache)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *signer) close() {
	s.cache.Close()
	s.store.Close()
}

func username(i int) string { return fmt.Sprintf("user%05d@%s", i, fakeidp.UserDomain) }

// signIn signs users from to to-1 in, with a few goroutines.
func (s *signer) signIn(ctx context.Context, from, to int) ([]confidential.Account, error) {
	accounts := make([]confidential.Account, to-from)
	errs := make([]error, to-from)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(accounts); i = int(next.Add(1) - 1) {
				name := username(from + i)
				if _, err := s.idp.AddUser(s.idp.Tenant(), name); err != nil {
					errs[i] = err
					continue
				}
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				res, err := s.idp.AuthCodeLogin(cctx, s.web, webClientID, redirectURI, name, userScope)
				cancel()
				if err != nil {
					errs[i] = fmt.Errorf("sign-in of user %d: %w", from+i, err)
					continue
				}
				accounts[i] = res.Account
			}
		})
	}
	wg.Wait()
	return accounts, errors.Join(errs...)
}

// firstTokens gets each tenant's first app token and returns the tenants'
// IDs.
func (s *signer) firstTokens(ctx context.Context, tenants []string) ([]string, error) {
	tids := make([]string, len(tenants))
	for i, t := range tenants {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		res, err := s.daemon.AcquireTokenByCredential(cctx, daemonScope, confidential.WithTenantID(t))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("client credentials for %s: %w", t, err)
		}
		tids[i] = tidOf(res.AccessToken)
	}
	return tids, nil
}

// writtenBack waits until the signer's Cache has written back what it
// kept during the outage, and returns how long that took.
func (s *signer) writtenBack(ctx context.Context, since time.Time) (time.Duration, error) {
	deadline := time.Now().Add(writeBackTimeout)
	for {
		if st := s.cache.Stats(); st.Pending == 0 && !st.StoreDown {
			return time.Since(since), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the tokens of the sign-ins made during the outage were not written back within %v of Redis's return", writeBackTimeout)
		}
		if !sleep(ctx, 10*time.Millisecond) {
			return 0, ctx.Err()
		}
	}
}

// workers are the worker processes.
type workers struct {
	procs []*workerProc
}

type workerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout, line by line; closed at EOF
}

// startWorkers re-executes this binary n times as workers.
func startWorkers(ctx context.Context, n int, cfg workerConfig, stderr io.Writer) (*workers, error) {
	self, err := os.Executable()
	if err != nil {
		return &workers{}, err
	}
	ws := &workers{}
	for i := range n {
		cfg.ID = i
		b, err := json.Marshal(cfg)
		if err != nil {
			return ws, err
		}
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), workerEnv+"="+string(b))
		cmd.Stderr = stderr
		cmd.SysProcAttr = sysProcAttr()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return ws, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return ws, err
		}
		if err := cmd.Start(); err != nil {
			return ws, fmt.Errorf("starting worker %d: %w", i, err)
		}
		p := &workerProc{cmd: cmd, stdin: stdin, lines: make(chan string, 4)}
		go func() {
			defer close(p.lines)
			sc := bufio.NewScanner(stdout)
			sc.Buffer(nil, 64<<20)
			for sc.Scan() {
				p.lines <- sc.Text()
			}
		}()
		ws.procs = append(ws.procs, p)
	}
	return ws, nil
}

// next returns the worker's next line, bounded by timeout and ctx.
func (p *workerProc) next(ctx context.Context, timeout time.Duration) (string, error) {
	select {
	case l, ok := <-p.lines:
		if !ok {
			return "", errors.New("it exited")
		}
		return l, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no answer within %v", timeout)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (ws *workers) awaitReady(ctx context.Context) error {
	for i, p := range ws.procs {
		l, err := p.next(ctx, readyTimeout)
		if err != nil {
			return fmt.Errorf("worker %d before its warm-up ended: %w", i, err)
		}
		if l != lineReady {
			return fmt.Errorf("worker %d said %q, want %q", i, l, lineReady)
		}
	}
	return nil
}

func (ws *workers) send(line string) {
	for _, p := range ws.procs {
		_, _ = io.WriteString(p.stdin, line+"\n")
	}
}

func (ws *workers) results(ctx context.Context) ([]*workerResult, error) {
	var out []*workerResult
	for i, p := range ws.procs {
		l, err := p.next(ctx, resultTimeout)
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		js, ok := strings.CutPrefix(l, resultLine)
		if !ok {
			return nil, fmt.Errorf("worker %d said %q, want its result", i, l)
		}
		var res workerResult
		if err := json.Unmarshal([]byte(js), &res); err != nil {
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		out = append(out, &res)
	}
	return out, nil
}

// stop ends the workers: it closes their stdin (a worker stops calling),
// waits a while for them to exit, and kills those that do not.
func (ws *workers) stop() {
	for _, p := range ws.procs {
		_ = p.stdin.Close()
	}
	deadline := time.Now().Add(resultTimeout)
	for _, p := range ws.procs {
		exited := make(chan struct{})
		go func() {
			for range p.lines { // drain, so that the worker is never blocked on stdout
			}
			_ = p.cmd.Wait()
			close(exited)
		}()
		select {
		case <-exited:
		case <-time.After(time.Until(deadline)):
			_ = p.cmd.Process.Kill()
			<-exited
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func addStats(s *distributed.Stats, o distributed.Stats) {
	s.L1Hits += o.L1Hits
	s.MemoryHits += o.MemoryHits
	s.StoreReads += o.StoreReads
	s.Misses += o.Misses
	s.Writes += o.Writes
	s.Conflicts += o.Conflicts
	s.Errors += o.Errors
	s.Invalidations += o.Invalidations
	s.Unmarshals += o.Unmarshals
	s.Dropped += o.Dropped
	s.Rejected += o.Rejected
}
