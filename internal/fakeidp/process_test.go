package fakeidp

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"
	"github.com/msalcache/msalcache/internal/testdir"
)

// Environment of a child process started by TestChildProcesses.
const (
	envRole      = "FAKEIDP_TEST_ROLE" // "pem" or "ssl-cert-file"
	envAuthority = "FAKEIDP_TEST_AUTHORITY"
	envCertFile  = "FAKEIDP_TEST_CERT_FILE"
	envUser      = "FAKEIDP_TEST_USER"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		if err := child(role); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child signs in twice in a separate process, as the example CLI would: once
// by device code (a generated user) and once by password (a chosen user), and
// prints both usernames.
func child(role string) error {
	opts := []public.Option{public.WithAuthority(os.Getenv(envAuthority)), public.WithInstanceDiscovery(false)}
	switch role {
	case "pem": // portable: trust exactly the server's certificate
		pem, err := os.ReadFile(os.Getenv(envCertFile))
		if err != nil {
			return err
		}
		client, err := ClientFromPEM(pem)
		if err != nil {
			return err
		}
		opts = append(opts, public.WithHTTPClient(client))
	case "ssl-cert-file": // MSAL's default client; SSL_CERT_FILE names the roots
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	app, err := public.New(testClientID, opts...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dc, err := app.AcquireTokenByDeviceCode(ctx, scopeRead)
	if err != nil {
		return err
	}
	res, err := dc.AuthenticationResult(ctx)
	if err != nil {
		return err
	}
	//lint:ignore SA1019 the password grant is the fast way to sign in a chosen user in tests
	res2, err := app.AcquireTokenByUsernamePassword(ctx, scopeRead, os.Getenv(envUser), "pw")
	if err != nil {
		return err
	}
	fmt.Println(res.Account.PreferredUsername, res2.Account.PreferredUsername)
	return nil
}

func TestChildProcesses(t *testing.T) {
	s := start(t)
	certFile := writeCertFile(t, s)
	roles := []string{"pem"}
	// Go reads SSL_CERT_FILE only where it builds the system roots itself.
	if runtime.GOOS != "windows" && runtime.GOOS != "darwin" && runtime.GOOS != "ios" {
		roles = append(roles, "ssl-cert-file")
	}
	const perRole = 3
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		users []string
	)
	for _, role := range roles {
		for i := range perRole {
			wg.Go(func() {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(),
					envRole+"="+role, envAuthority+"="+s.Authority(), envCertFile+"="+certFile,
					envUser+"="+fmt.Sprintf("%s-%d@contoso.example", role, i))
				if role == "ssl-cert-file" {
					cmd.Env = append(cmd.Env, "SSL_CERT_FILE="+certFile)
				}
				out, err := cmd.Output()
				if err != nil {
					t.Errorf("child %s %d: %v\n%s", role, i, err, exitStderr(err))
					return
				}
				mu.Lock()
				users = append(users, strings.Fields(string(out))...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()

	n := len(roles) * perRole
	slices.Sort(users)
	if len(slices.Compact(slices.Clone(users))) != 2*n {
		t.Errorf("children signed in as %v, want %d distinct users", users, 2*n)
	}
	for _, role := range roles {
		if !slices.Contains(users, role+"-0@contoso.example") {
			t.Errorf("no password login from a %s child: %v", role, users)
		}
	}
	c := s.Requests()
	t.Logf("%d child processes: %+v", n, c)
	if c.Discovery != n || c.TokensIssued != 2*n || c.Errors != 0 {
		t.Errorf("counts %+v, want %d discoveries and %d tokens", c, n, 2*n)
	}
}

// writeCertFile writes the server's certificate to a new file, as a parent
// process does for its children.
func writeCertFile(t *testing.T, s *Server) string {
	t.Helper()
	file := filepath.Join(testdir.New(t), "fakeidp.pem")
	if err := os.WriteFile(file, s.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func TestClientFromPEM(t *testing.T) {
	s := start(t)
	client, err := ClientFromPEM(s.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(s.Authority() + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d", resp.StatusCode)
	}

	// Another server's certificate is not trusted.
	other := start(t)
	if _, err := client.Get(other.Authority() + "/v2.0/.well-known/openid-configuration"); err == nil {
		t.Error("a client for one server trusted another server")
	}
	if _, err := ClientFromPEM([]byte("not a certificate")); err == nil {
		t.Error("ClientFromPEM accepted garbage")
	}
}
