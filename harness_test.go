package msalcache

// The test harness: a local identity provider, real MSAL Go clients on a
// Cache, and child processes (the test binary re-executed with a role) that
// share one cache file.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/internal/testdir"
	"github.com/msalcache/msalcache/lock"
	"github.com/msalcache/msalcache/persistence"
)

const testClientID = "0b6d4f1e-6f0a-4c53-9a39-3f2c1d5e7a11"

// Environment of a child process.
const (
	envRole      = "MSALCACHE_TEST_ROLE"
	envAuthority = "MSALCACHE_TEST_AUTHORITY"
	envCert      = "MSALCACHE_TEST_CERT"
	envCache     = "MSALCACHE_TEST_CACHE"
	envMode      = "MSALCACHE_TEST_MODE" // "plaintext" or the keyring item "service/account" ("dpapi" on Windows)
	envArg       = "MSALCACHE_TEST_ARG"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		if err := runRole(role); err != nil {
			fmt.Fprintf(os.Stderr, "child %s (%s): %v\n", role, os.Getenv(envArg), err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// idp is a running local identity provider with its certificate in a file.
type idp struct {
	*fakeidp.Server
	certFile string
}

func startIDP(t testing.TB) *idp {
	t.Helper()
	s, err := fakeidp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	certFile := filepath.Join(testdir.New(t), "idp.pem")
	if err := os.WriteFile(certFile, s.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return &idp{Server: s, certFile: certFile}
}

// mode says how a test stores the cache: in plaintext, or with the platform
// protection under a keyring item of the test's own.
type mode string

const plaintextMode mode = "plaintext"

// platformMode returns the platform protection for this test, failing or
// skipping where this machine lacks it.
func platformMode(t testing.TB) mode {
	t.Helper()
	if runtime.GOOS == "windows" {
		return "dpapi"
	}
	requireSecretService(t)
	return mode("msalcache-test/" + strings.ReplaceAll(t.Name(), "/", "_") + "-" + randomHex(4))
}

// requireSecretService skips (or, where the test command promises every
// service, fails) a test that needs a Secret Service on Linux.
func requireSecretService(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("the platform protection on %s is not exercised by this test", runtime.GOOS)
	}
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		msg := "no D-Bus session bus: run the tests with scripts/with-keyring.sh (gnome-keyring on a private bus)"
		if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

func (m mode) options() []Option {
	switch {
	case m == plaintextMode:
		return []Option{WithPlaintext()}
	case m == "dpapi":
		return nil
	default:
		service, account, _ := strings.Cut(string(m), "/")
		return []Option{WithKeyringItem(service, account)}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// openCache is New for tests.
func openCache(t testing.TB, path string, m mode, opts ...Option) *Cache {
	t.Helper()
	c, err := New(path, append(m.options(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newApp(authority string, hc *http.Client, c cache.ExportReplace) (public.Client, error) {
	opts := []public.Option{
		public.WithAuthority(authority),
		public.WithInstanceDiscovery(false),
		public.WithHTTPClient(hc),
	}
	if c != nil {
		opts = append(opts, public.WithCache(c))
	}
	return public.New(testClientID, opts...)
}

func mustApp(t testing.TB, s *idp, c cache.ExportReplace) public.Client {
	t.Helper()
	app, err := newApp(s.Authority(), s.HTTPClient(), c)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// login signs a user in with the device code flow (approved at once).
func login(ctx context.Context, app public.Client, scopes ...string) (public.AuthResult, error) {
	dc, err := app.AcquireTokenByDeviceCode(ctx, scopes)
	if err != nil {
		return public.AuthResult{}, err
	}
	return dc.AuthenticationResult(ctx)
}

func mustLogin(t testing.TB, app public.Client, scopes ...string) public.AuthResult {
	t.Helper()
	res, err := login(testCtx(t), app, scopes...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func scope(name string) string { return "api://msalcache-test/" + name }

// child starts the test binary in a role, against s, on the cache at path.
func child(t testing.TB, s *idp, path string, m mode, role, arg string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		envRole+"="+role, envAuthority+"="+s.Authority(), envCert+"="+s.certFile,
		envCache+"="+path, envMode+"="+string(m), envArg+"="+arg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t.Cleanup(func() {
		if cmd.ProcessState == nil && cmd.Process != nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() && out.Len() > 0 {
			t.Logf("child %s %s output:\n%s", role, arg, out.String())
		}
	})
	return cmd
}

// runChildren starts one child per argument and waits for all of them.
func runChildren(t *testing.T, s *idp, path string, m mode, role string, args ...string) {
	t.Helper()
	cmds := make([]*exec.Cmd, len(args))
	for i, arg := range args {
		cmds[i] = child(t, s, path, m, role, arg)
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(cmds))
	for i, cmd := range cmds {
		wg.Go(func() { errs[i] = cmd.Wait() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("children %s failed: %v", role, err)
	}
}

// childApp is what a child process works with.
type childApp struct {
	app   public.Client
	cache *Cache
	arg   string
}

func runRole(role string) error {
	switch role {
	case "read-only":
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return readOnlyRole(ctx, os.Getenv(envCache))
	case "rotate":
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return rotateRole(ctx, os.Getenv(envCache))
	case "hold-lock":
		return holdLockRole(os.Getenv(envCache))
	}
	pem, err := os.ReadFile(os.Getenv(envCert))
	if err != nil {
		return err
	}
	hc, err := fakeidp.ClientFromPEM(pem)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	opts := append(mode(os.Getenv(envMode)).options(), WithLogger(logger))
	if role == "headless" {
		opts = append(opts, WithPlaintextFallback()) // a session without the keyring
	}
	c, err := New(os.Getenv(envCache), opts...)
	if err != nil {
		return err
	}
	app, err := newApp(os.Getenv(envAuthority), hc, c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca := childApp{app: app, cache: c, arg: os.Getenv(envArg)}
	switch role {
	case "silent":
		return ca.silent(ctx)
	case "churn":
		return ca.churn(ctx)
	case "write-forever":
		return ca.writeForever(ctx)
	case "headless":
		return ca.headless(ctx)
	}
	return fmt.Errorf("unknown role %q", role)
}

// silent acquires tokens for ten scopes of its own; each one redeems the
// refresh token and exports the cache.
func (ca childApp) silent(ctx context.Context) error {
	accounts, err := ca.app.Accounts(ctx)
	if err != nil || len(accounts) != 1 {
		return fmt.Errorf("accounts = %d, %v; want one", len(accounts), err)
	}
	for j := range 10 {
		if _, err := ca.app.AcquireTokenSilent(ctx, []string{scope(fmt.Sprintf("p%s-s%d", ca.arg, j))},
			public.WithSilentAccount(accounts[0])); err != nil {
			return fmt.Errorf("scope %d: %w", j, err)
		}
	}
	return nil
}

// churn removes the accounts named "remove:<user>" and signs in those named
// "add:<user>" (the identity provider names a device code login's user
// after its first scope), interleaved, with silent calls in between.
func (ca childApp) churn(ctx context.Context) error {
	for _, step := range strings.Split(ca.arg, ",") {
		op, user, _ := strings.Cut(step, ":")
		switch op {
		case "remove":
			accounts, err := ca.app.Accounts(ctx)
			if err != nil {
				return err
			}
			found := false
			for _, a := range accounts {
				if a.PreferredUsername == user {
					found = true
					if err := ca.app.RemoveAccount(ctx, a); err != nil {
						return err
					}
				}
			}
			if !found {
				return fmt.Errorf("remove %s: not among %d accounts", user, len(accounts))
			}
		case "add":
			//lint:ignore SA1019 the password grant signs test users in without the device code wait
			if _, err := ca.app.AcquireTokenByUsernamePassword(ctx, []string{scope("churn")}, user, "pw"); err != nil {
				return fmt.Errorf("add %s: %w", user, err)
			}
		default:
			return fmt.Errorf("bad step %q", step)
		}
	}
	return nil
}

// headless is a process of the app in a session without the keyring, on
// the plaintext fallback, next to the cache file a desktop session
// encrypted: every call that needs the file fails with an error wrapping
// persistence.ErrUnavailable that says what to do, and nothing is written.
func (ca childApp) headless(ctx context.Context) error {
	if p := ca.cache.Protection(); p != "plaintext" {
		return fmt.Errorf("protection %q; want the plaintext fallback", p)
	}
	var problems []error
	accounts, err := ca.app.Accounts(ctx)
	if !errors.Is(err, persistence.ErrUnavailable) || errors.Is(err, persistence.ErrCorrupt) || !strings.Contains(err.Error(), "cache path of its own") {
		problems = append(problems, fmt.Errorf("Accounts: %d, %v; want an error wrapping ErrUnavailable that says what to do", len(accounts), err))
	}
	//lint:ignore SA1019 the password grant signs test users in without the device code wait
	_, err = ca.app.AcquireTokenByUsernamePassword(ctx, []string{scope("headless")}, "headless@contoso.example", "pw")
	if !errors.Is(err, persistence.ErrUnavailable) {
		problems = append(problems, fmt.Errorf("sign-in: %v; want an error wrapping ErrUnavailable", err))
	}
	return errors.Join(problems...)
}

// writeForever keeps acquiring tokens for new scopes, so that it is
// writing the cache most of the time, until it is killed.
func (ca childApp) writeForever(ctx context.Context) error {
	accounts, err := ca.app.Accounts(ctx)
	if err != nil || len(accounts) == 0 {
		return fmt.Errorf("accounts = %d, %v", len(accounts), err)
	}
	fmt.Println("ready")
	for i := 0; ; i++ {
		_, err := ca.app.AcquireTokenSilent(ctx, []string{scope(ca.arg + "-" + strconv.Itoa(i))},
			public.WithSilentAccount(accounts[0]))
		if err != nil {
			return err
		}
	}
}

// readCacheJSON decodes the cache file the way a fresh process would.
func readCacheJSON(t testing.TB, c *Cache) *msaljson.Snapshot {
	t.Helper()
	data, _, err := c.file.Read(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := msaljson.Parse(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readOnlyRole runs in the child of TestReadOnlyCacheDirectory.
func readOnlyRole(ctx context.Context, path string) error {
	c, err := New(path, WithPlaintext())
	if err != nil {
		return err
	}
	target := &countingTarget{}
	if err := c.Replace(ctx, target, cache.ReplaceHints{}); err != nil {
		return err
	}
	if !bytes.Contains(target.data, []byte("kept")) {
		return errors.New("the cache did not load in a read-only directory")
	}
	target.data = []byte(`{"AccessToken":{"k":{"secret":"new"}}}`)
	err = c.Export(ctx, target, cache.ExportHints{})
	if err == nil {
		return errors.New("Export succeeded in a read-only directory")
	}
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), filepath.Dir(path)) {
		return errors.New("Export's error is not a permission error naming the directory: " + err.Error())
	}
	os.Stdout.WriteString("Export in a read-only directory: " + err.Error() + "\n")
	return nil
}

// rotateRole runs in a child: another process that rotates every refresh
// token in the cache (appends "-rotated" to its secret), as an identity
// provider that rotates refresh tokens makes MSAL do.
func rotateRole(ctx context.Context, path string) error {
	c, err := New(path, WithPlaintext())
	if err != nil {
		return err
	}
	defer c.Close()
	target := &countingTarget{}
	if err := c.Replace(ctx, target, cache.ReplaceHints{}); err != nil {
		return err
	}
	var top map[string]map[string]map[string]any
	if err := json.Unmarshal(target.data, &top); err != nil {
		return err
	}
	if len(top["RefreshToken"]) == 0 {
		return errors.New("no refresh token to rotate")
	}
	for _, rt := range top["RefreshToken"] {
		rt["secret"] = fmt.Sprint(rt["secret"]) + "-rotated"
	}
	if target.data, err = json.Marshal(top); err != nil {
		return err
	}
	return c.Export(ctx, target, cache.ExportHints{})
}

// holdLockRole runs in a child: another process that takes the cache's
// lock, says "locked" and holds it until its stdin is closed.
func holdLockRole(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	unlock, err := lock.New(path + ".lockfile").Lock(ctx)
	if err != nil {
		return err
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	return unlock()
}
