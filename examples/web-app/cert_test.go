package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/testdir"
)

// TestDaemonCertificate runs the daemon in this process with a client
// certificate instead of a secret, for two tenants, on the memory store.
func TestDaemonCertificate(t *testing.T) {
	idp, err := fakeidp.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	for _, tn := range []string{"contoso-cert", "fabrikam-cert"} {
		if _, err := idp.AddTenant(tn); err != nil {
			t.Fatal(err)
		}
	}
	dir := testdir.New(t)
	cert, certPEM := newClientCert(t)
	if err := idp.RegisterClient(fakeidp.ConfidentialClient{ID: testClientID, Certificates: []*x509.Certificate{cert}}); err != nil {
		t.Fatal(err)
	}
	certFile, caFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "idp.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, idp.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runIn(context.Background(), nil, "daemon", "--client-id", testClientID, "--client-cert", certFile,
		"--authority", idp.Authority(), "--ca-file", caFile, "--tenants", "contoso-cert,fabrikam-cert",
		"--scopes", fakeidp.MeResource+"/.default", "--interval", "50ms", "--rounds", "3")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, tn := range []string{"contoso-cert", "fabrikam-cert"} {
		if n := idp.TenantRequests(tn); n.ClientCredentialsGrant != 1 {
			t.Errorf("%s: %d client credentials requests, want 1", tn, n.ClientCredentialsGrant)
		}
		if c := strings.Count(out, tn+" "); c != 3 {
			t.Errorf("%s: %d lines, want 3:\n%s", tn, c, out)
		}
	}
	if strings.Contains(out+errOut, "PRIVATE KEY") {
		t.Error("the daemon printed its private key")
	}
}

// newClientCert returns a self-signed certificate and the PEM of it and its
// private key, as --client-cert takes them.
func newClientCert(t *testing.T) (*x509.Certificate, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "web-app test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return cert, append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
}

// TestPanicPage: a handler that panics gives a plain error page, with the
// panic in the log and no stack trace in the browser.
func TestPanicPage(t *testing.T) {
	s := newSite(t, "")
	srv := s.a().srv
	h := srv.protect(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom at handler.go:12") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusInternalServerError || !strings.Contains(body, "Something went wrong") {
		t.Errorf("%d\n%s", rec.Code, body)
	}
	if stackTrace.MatchString(body) || strings.Contains(body, "boom") {
		t.Errorf("the page shows the panic:\n%s", body)
	}
	if !strings.Contains(s.logs.String(), "boom") {
		t.Error("the panic is not logged")
	}
}

// TestSecureCookiesOverHTTPS: a replica whose redirect URL is https sets
// Secure cookies.
func TestSecureCookiesOverHTTPS(t *testing.T) {
	s := newSite(t, "")
	for _, tc := range []struct {
		redirect string
		secure   bool
	}{{"http://127.0.0.1:8080/callback", false}, {"https://app.example/callback", true}} {
		so := serveOptions{app: appOptions{clientID: testClientID, authority: s.idp.Authority(), clientSecret: testSecret, caFile: s.caFile},
			store: storeOptions{store: "memory"}, redirectURL: tc.redirect, scopes: testScope, apiURL: s.idp.MeURL(), name: "C"}
		srv, closeSrv, err := newServerOn(&so, s.keys, slogDiscard(), nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		srv.routes().ServeHTTP(rec, httptest.NewRequest("GET", "/signin", nil))
		closeSrv()
		cs := rec.Result().Cookies()
		if len(cs) != 1 || cs[0].Secure != tc.secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteLaxMode {
			t.Errorf("redirect %s: cookies %+v, want Secure=%v", tc.redirect, cs, tc.secure)
		}
	}
}

// TestAPIFailurePage: when the downstream API fails, the page says so
// plainly, without the API's answer, a token or a stack trace.
func TestAPIFailurePage(t *testing.T) {
	s := newSite(t, "")
	b := s.newBrowser(t)
	s.signIn(t, b, s.a(), "alice@contoso.example")
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "goroutine 7 [running]: internal detail at api.go:42", http.StatusServiceUnavailable)
	}))
	defer api.Close()
	srv := *s.a().srv
	srv.apiURL = api.URL
	req := httptest.NewRequest("GET", "/me", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: b.cookie(s.a().url, sessionCookie)})
	rec := httptest.NewRecorder()
	srv.routes().ServeHTTP(rec, req)
	body := rec.Body.String()
	if rec.Code != http.StatusBadGateway || !strings.Contains(body, "The API failed") {
		t.Errorf("%d\n%s", rec.Code, body)
	}
	if stackTrace.MatchString(body) || jwtLike.MatchString(body) || strings.Contains(body, "internal detail") {
		t.Errorf("the page shows the API's answer or a token:\n%s", body)
	}
}
