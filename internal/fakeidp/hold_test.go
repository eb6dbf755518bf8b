package fakeidp

import (
	"context"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// HoldRefreshes holds a silent call's refresh until release, and only
// refreshes; Close ends a hold.
func TestHoldRefreshes(t *testing.T) {
	s := start(t)
	ctx := context.Background()
	app := webApp(t, s)
	user := addUser(t, s, s.Tenant(), "held@"+UserDomain)
	res, err := s.AuthCodeLogin(ctx, app, webClientID, redirectURI, user.Username, []string{MeScope})
	if err != nil {
		t.Fatal(err)
	}
	held, release := s.HoldRefreshes()
	done := make(chan error, 1)
	go func() {
		_, err := app.AcquireTokenSilent(ctx, []string{"api://held/read"}, confidential.WithSilentAccount(res.Account))
		done <- err
	}()
	select {
	case name := <-held:
		if name != user.Username {
			t.Errorf("held the answer for %q, want %q", name, user.Username)
		}
	case err := <-done:
		t.Fatalf("the refresh was not held: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no refresh held within 30 s")
	}
	select {
	case err := <-done:
		t.Fatalf("the refresh returned while held: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	// Other grants are not held.
	if _, err := s.AuthCodeLogin(ctx, webApp(t, s), webClientID, redirectURI, user.Username, []string{MeScope}); err != nil {
		t.Fatalf("a sign-in while refreshes are held: %v", err)
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("the refresh after release: %v", err)
	}
	release() // a second release does nothing

	// Close ends a hold.
	s2 := start(t)
	app2 := webApp(t, s2)
	addUser(t, s2, s2.Tenant(), user.Username)
	res2, err := s2.AuthCodeLogin(ctx, app2, webClientID, redirectURI, user.Username, []string{MeScope})
	if err != nil {
		t.Fatal(err)
	}
	held2, _ := s2.HoldRefreshes()
	go func() {
		_, err := app2.AcquireTokenSilent(ctx, []string{"api://held/read"}, confidential.WithSilentAccount(res2.Account))
		done <- err
	}()
	<-held2
	closed := make(chan struct{})
	go func() { s2.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a held answer")
	}
	<-done
}
