package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/internal/fakeidp"
)

// authorize starts a sign-in on r in browser b and returns the identity
// provider's authorize URL the app redirected to.
func (s *site) authorize(t testing.TB, b *browser, r *replica) string {
	t.Helper()
	u, err := s.authorizeErr(b, r)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (s *site) authorizeErr(b *browser, r *replica) (string, error) {
	resp, err := b.doErr(http.MethodGet, r.url+"/signin", nil)
	if err != nil {
		return "", err
	}
	if resp.status != http.StatusFound || !strings.HasPrefix(resp.location, s.idp.Authority()) {
		return "", fmt.Errorf("/signin: %d to %q, want a redirect to the identity provider", resp.status, resp.location)
	}
	return resp.location, nil
}

// consent signs username in at the identity provider for the authorize URL
// and returns the callback URL it redirects the browser to.
func (s *site) consent(t testing.TB, authorizeURL, username string) string {
	t.Helper()
	cb, err := s.consentErr(authorizeURL, username)
	if err != nil {
		t.Fatal(err)
	}
	return cb
}

func (s *site) consentErr(authorizeURL, username string) (string, error) {
	if _, err := s.idp.AddUser(s.idp.Tenant(), username); err != nil {
		return "", err
	}
	cb, err := s.idp.SignIn(authorizeURL, username)
	if err != nil {
		return "", err
	}
	return cb.String(), nil
}

// signIn signs username in on r in browser b, and checks the home page.
func (s *site) signIn(t testing.TB, b *browser, r *replica, username string) {
	t.Helper()
	if err := s.signInErr(b, r, username); err != nil {
		t.Fatal(err)
	}
}

// signInErr is signIn for any goroutine: it returns what went wrong.
func (s *site) signInErr(b *browser, r *replica, username string) error {
	au, err := s.authorizeErr(b, r)
	if err != nil {
		return err
	}
	cb, err := s.consentErr(au, username)
	if err != nil {
		return err
	}
	resp, err := b.doErr(http.MethodGet, cb, nil)
	if err != nil {
		return err
	}
	if resp.status != http.StatusSeeOther || resp.location != "/" {
		return fmt.Errorf("callback: %d %q", resp.status, resp.title())
	}
	home, err := b.doErr(http.MethodGet, r.url+"/", nil)
	if err != nil {
		return err
	}
	if home.title() != "Signed in" || !strings.Contains(home.body, ">"+username+"<") {
		return fmt.Errorf("after sign-in: %d %q\n%s", home.status, home.title(), home.body)
	}
	return nil
}

// expectRefused checks a refusal page: the status, a title, a message that
// says why, and no session cookie.
func expectRefused(t *testing.T, b *browser, resp response, r *replica, title, why string) {
	t.Helper()
	if resp.status < 400 || resp.title() != title || !strings.Contains(htmlUnescape(resp.body), why) {
		t.Errorf("got %d %q, want a %q page saying %q:\n%s", resp.status, resp.title(), title, why, resp.body)
	}
	if b.cookie(r.url, sessionCookie) != "" {
		t.Error("a refused sign-in left a session cookie")
	}
	if !strings.Contains(resp.body, `href="/signin"`) {
		t.Error("the refusal page offers no way to sign in again")
	}
}

// tokenRequests is the number of token requests the identity provider got.
func (s *site) tokenRequests() int { return s.idp.Requests().Token }

// TestSignInFlow is the whole story over HTTP: sign in on A, the API page on
// B without a request to the identity provider, sign-out on B, and neither
// replica has the user any more.
func TestSignInFlow(t *testing.T) {
	s := newSite(t, "")
	b := s.newBrowser(t)
	s.signIn(t, b, s.a(), "alice@contoso.example")

	before := s.idp.Requests()
	me := b.get(s.b().url + "/me")
	if me.status != http.StatusOK || me.title() != "You, to the API" || !strings.Contains(me.body, "the shared token cache") {
		t.Fatalf("/me on B: %d %q\n%s", me.status, me.title(), me.body)
	}
	if n := s.idp.Requests().Sub(before); n.Token != 0 || n.Me != 1 {
		t.Errorf("/me on B: %+v; want no token request and one call of the API", n)
	}
	if !strings.Contains(me.body, "alice@contoso.example") || !strings.Contains(me.body, `id="expires"`) {
		t.Errorf("/me does not show the user and the token's expiry:\n%s", me.body)
	}
	if jwtLike.MatchString(me.body) {
		t.Error("/me shows a token")
	}
	old := b.cookie(s.a().url, sessionCookie)

	out := b.do(http.MethodPost, s.b().url+"/signout", url.Values{})
	if out.title() != "Signed out" || b.cookie(s.a().url, sessionCookie) != "" {
		t.Fatalf("sign-out: %d %q, session cookie left: %v", out.status, out.title(), b.cookie(s.a().url, sessionCookie) != "")
	}
	// The old cookie, replayed on either replica, finds no session.
	before = s.idp.Requests()
	for _, r := range s.replicas {
		b.setCookie(r.url, sessionCookie, old)
		resp := b.get(r.url + "/me")
		if resp.status != http.StatusUnauthorized || !strings.Contains(resp.body, "Your session has ended") {
			t.Errorf("/me on %s with the signed-out cookie: %d %q", r.srv.name, resp.status, resp.title())
		}
	}
	if n := s.idp.Requests().Sub(before); n != (fakeidp.Counts{}) {
		t.Errorf("requests to the identity provider after sign-out: %+v", n)
	}
	// The partition is gone for every client of the store, not just hidden
	// by the session: a fresh client on the same cache finds no account.
	s.expectNoAccount(t, "alice@contoso.example")
	noLeaks(t, "the replicas' logs", []byte(s.logs.String()), testSecret, old)
}

// expectNoAccount checks that the shared cache holds no account for
// username, through a client of its own.
func (s *site) expectNoAccount(t *testing.T, username string) {
	t.Helper()
	ctx := context.Background()
	r := s.a()
	u, err := s.idp.AddUser(s.idp.Tenant(), username)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := r.srv.app.Account(ctx, u.HomeAccountID)
	if err == nil && acct.HomeAccountID != "" {
		if _, err := r.srv.app.AcquireTokenSilent(ctx, r.srv.scopes, confidential.WithSilentAccount(acct)); err == nil {
			t.Errorf("the cache still serves %s's tokens", username)
		}
	}
}

// TestCallbackRefusals feeds the callback what an attacker can: each is
// refused with a page that says why, before any token request.
func TestCallbackRefusals(t *testing.T) {
	s := newSite(t, "")
	a := s.a()

	t.Run("forged state", func(t *testing.T) {
		b := s.newBrowser(t)
		cb := s.consent(t, s.authorize(t, b, a), "mallory@contoso.example")
		before := s.tokenRequests()
		expectRefused(t, b, b.get(withParam(t, cb, "state", randomString(32))), a, "Sign-in refused", "state mismatch")
		if n := s.tokenRequests() - before; n != 0 {
			t.Errorf("%d token requests", n)
		}
	})

	t.Run("replayed state", func(t *testing.T) {
		b := s.newBrowser(t)
		cb := s.consent(t, s.authorize(t, b, a), "bob@contoso.example")
		signin := b.cookie(a.url, loginCookie)
		if first := b.get(cb); first.status != http.StatusSeeOther {
			t.Fatalf("first callback: %d %q", first.status, first.title())
		}
		// The same answer again, with the sign-in cookie put back, on the
		// other replica as well.
		before := s.tokenRequests()
		for _, r := range s.replicas {
			b2 := s.newBrowser(t)
			b2.setCookie(r.url, loginCookie, signin)
			expectRefused(t, b2, b2.get(strings.Replace(cb, a.url, r.url, 1)), r, "Sign-in refused", "already used")
		}
		if n := s.tokenRequests() - before; n != 0 {
			t.Errorf("%d token requests", n)
		}
	})

	t.Run("another user's sign-in", func(t *testing.T) {
		// Login CSRF: the attacker's own sign-in answer, sent to the
		// victim's browser, which has a sign-in of its own under way.
		attacker, victim := s.newBrowser(t), s.newBrowser(t)
		cb := s.consent(t, s.authorize(t, attacker, a), "mallory@contoso.example")
		s.authorize(t, victim, a)
		before := s.tokenRequests()
		expectRefused(t, victim, victim.get(cb), a, "Sign-in refused", "state mismatch")
		// And with no sign-in under way at all.
		fresh := s.newBrowser(t)
		expectRefused(t, fresh, fresh.get(cb), a, "Sign-in refused", "not started in this browser")
		if n := s.tokenRequests() - before; n != 0 {
			t.Errorf("%d token requests", n)
		}
	})

	t.Run("missing PKCE verifier", func(t *testing.T) {
		b := s.newBrowser(t)
		cb := s.consent(t, s.authorize(t, b, a), "carol@contoso.example")
		var st signInState
		if err := a.srv.cookies.open(loginCookie, b.cookie(a.url, loginCookie), &st); err != nil {
			t.Fatal(err)
		}
		st.Verifier = ""
		sealed, err := a.srv.cookies.seal(loginCookie, st)
		if err != nil {
			t.Fatal(err)
		}
		b.setCookie(a.url, loginCookie, sealed)
		before := s.tokenRequests()
		expectRefused(t, b, b.get(cb), a, "Sign-in refused", "no PKCE verifier")
		if n := s.tokenRequests() - before; n != 0 {
			t.Errorf("%d token requests", n)
		}
	})

	t.Run("tampered sign-in cookie", func(t *testing.T) {
		b := s.newBrowser(t)
		cb := s.consent(t, s.authorize(t, b, a), "dave@contoso.example")
		b.setCookie(a.url, loginCookie, tamper(b.cookie(a.url, loginCookie)))
		before := s.tokenRequests()
		expectRefused(t, b, b.get(cb), a, "Sign-in refused", "not one this app made")
		if n := s.tokenRequests() - before; n != 0 {
			t.Errorf("%d token requests", n)
		}
	})

	t.Run("wrong nonce", func(t *testing.T) {
		// The authorization request reaches the identity provider with
		// another nonce: the ID token it issues does not match the sign-in.
		// Only the token request can reveal that; the tokens it brought
		// are removed and no session starts.
		b := s.newBrowser(t)
		au := withParam(t, s.authorize(t, b, a), "nonce", randomString(32))
		cb := s.consent(t, au, "erin@contoso.example")
		before := s.tokenRequests()
		expectRefused(t, b, b.get(cb), a, "Sign-in refused", "its nonce does not match")
		if n := s.tokenRequests() - before; n != 1 {
			t.Errorf("%d token requests, want the one that brought the ID token", n)
		}
		s.expectNoAccount(t, "erin@contoso.example")
	})

	t.Run("code challenge changed", func(t *testing.T) {
		// PKCE holds end to end: a code issued for another challenge is not
		// redeemed with this sign-in's verifier.
		b := s.newBrowser(t)
		au := withParam(t, s.authorize(t, b, a), "code_challenge", strings.Repeat("A", 43))
		cb := s.consent(t, au, "frank@contoso.example")
		expectRefused(t, b, b.get(cb), a, "Sign-in failed", "did not accept the sign-in")
		s.expectNoAccount(t, "frank@contoso.example")
	})

	t.Run("error from the identity provider", func(t *testing.T) {
		b := s.newBrowser(t)
		resp := b.get(a.url + "/callback?error=access_denied&error_description=" + url.QueryEscape(unescapedProbe))
		expectRefused(t, b, resp, a, "Sign-in was not completed", "access_denied")
		if strings.Contains(resp.body, unescapedProbe) {
			t.Error("the page shows the identity provider's error description unescaped")
		}
	})
	noLeaks(t, "the replicas' logs", []byte(s.logs.String()), testSecret)
}

// TestSessionCookieRefusals: a session cookie that is tampered with, or
// does not belong to its session, is refused without a token request.
func TestSessionCookieRefusals(t *testing.T) {
	s := newSite(t, "")
	alice, bob := s.newBrowser(t), s.newBrowser(t)
	s.signIn(t, alice, s.a(), "alice@contoso.example")
	s.signIn(t, bob, s.b(), "bob@contoso.example")
	aliceCookie, bobCookie := alice.cookie(s.a().url, sessionCookie), bob.cookie(s.a().url, sessionCookie)

	var aliceSess, bobSess sessionState
	if err := s.a().srv.cookies.open(sessionCookie, aliceCookie, &aliceSess); err != nil {
		t.Fatal(err)
	}
	if err := s.a().srv.cookies.open(sessionCookie, bobCookie, &bobSess); err != nil {
		t.Fatal(err)
	}
	// Bob's session with Alice's partition key: what an attacker would need
	// to reach another user's tokens through their own session.
	swapped, err := s.a().srv.cookies.seal(sessionCookie, sessionState{SID: bobSess.SID, Account: aliceSess.Account, Expires: bobSess.Expires})
	if err != nil {
		t.Fatal(err)
	}
	otherApp, _ := newSealer([][]byte{randomKey()}, purposeCookies)
	foreign, _ := otherApp.seal(sessionCookie, aliceSess)
	// The sign-in cookie's sealed value used as a session cookie.
	var asSignIn string
	{
		b := s.newBrowser(t)
		s.authorize(t, b, s.a())
		asSignIn = b.cookie(s.a().url, loginCookie)
	}

	for _, tc := range []struct{ name, cookie, why string }{
		{"tampered", tamper(aliceCookie), "not made by this app"},
		{"sealed by another app", foreign, "not made by this app"},
		{"a sign-in cookie", asSignIn, "not made by this app"},
		{"another user's partition in one's own session", swapped, "Your session has ended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.idp.Requests()
			for _, r := range s.replicas {
				b := s.newBrowser(t)
				b.setCookie(r.url, sessionCookie, tc.cookie)
				resp := b.get(r.url + "/me")
				if resp.status != http.StatusUnauthorized || resp.title() != "Please sign in" || !strings.Contains(htmlUnescape(resp.body), tc.why) {
					t.Errorf("/me on %s: %d %q\n%s", r.srv.name, resp.status, resp.title(), resp.body)
				}
				if strings.Contains(resp.body, "alice@contoso.example") {
					t.Errorf("/me on %s shows Alice", r.srv.name)
				}
				// Sign-out with it removes nothing.
				b.setCookie(r.url, sessionCookie, tc.cookie)
				b.do(http.MethodPost, r.url+"/signout", url.Values{})
			}
			if n := s.idp.Requests().Sub(before); n != (fakeidp.Counts{}) {
				t.Errorf("requests to the identity provider: %+v", n)
			}
		})
	}
	// Alice and Bob are still signed in and served.
	for _, b := range []*browser{alice, bob} {
		if resp := b.get(s.b().url + "/me"); resp.status != http.StatusOK {
			t.Errorf("a real session after the attempts: %d %q", resp.status, resp.title())
		}
	}
	// A cross-site sign-out POST is refused.
	req, _ := http.NewRequest(http.MethodPost, s.a().url+"/signout", nil)
	req.Header.Set("Origin", "https://evil.example")
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: aliceCookie})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site sign-out: %d", resp.StatusCode)
	}
	if r := alice.get(s.a().url + "/me"); r.status != http.StatusOK {
		t.Errorf("Alice after a cross-site sign-out attempt: %d %q", r.status, r.title())
	}
	noLeaks(t, "the replicas' logs", []byte(s.logs.String()), testSecret, aliceCookie, bobCookie)
}

// TestSessionCookieHoldsNoToken: the session cookie is small and holds no
// token (its attributes: TestSecureCookiesOverHTTPS).
func TestSessionCookieHoldsNoToken(t *testing.T) {
	s := newSite(t, "")
	b := s.newBrowser(t)
	s.signIn(t, b, s.a(), "alice@contoso.example")
	c := b.cookie(s.a().url, sessionCookie)
	if jwtLike.MatchString(c) || len(c) > 400 {
		t.Errorf("the session cookie (%d bytes) looks like it holds a token", len(c))
	}
	var sess sessionState
	if err := s.a().srv.cookies.open(sessionCookie, c, &sess); err != nil || sess.SID == "" || sess.Account == "" {
		t.Errorf("the session cookie opens to %+v (%v), want a session ID and a partition key only", sess, err)
	}
}

func withParam(t *testing.T, u, k, v string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	q.Set(k, v)
	pu.RawQuery = q.Encode()
	return pu.String()
}

// tamper flips one bit in the middle of a sealed value.
func tamper(sealed string) string {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(raw) == 0 {
		return sealed + "x"
	}
	raw[len(raw)/2] ^= 1
	return base64.RawURLEncoding.EncodeToString(raw)
}

// TestConcurrentUsers: users sign in, use the API page on the other
// replica, and sign out, all at once on one shared client per replica:
// every page shows its own user, and a signed-out user is refused while the
// others are still served.
func TestConcurrentUsers(t *testing.T) {
	s := newSite(t, "")
	const users = 24
	var wg sync.WaitGroup
	errs := make(chan error, users)
	for i := range users {
		wg.Go(func() {
			name := fmt.Sprintf("user%02d@contoso.example", i)
			b := s.newBrowser(t)
			in, other := s.replicas[i%2], s.replicas[1-i%2]
			if err := s.signInErr(b, in, name); err != nil {
				errs <- fmt.Errorf("%s: %v", name, err)
				return
			}
			for range 3 {
				me, err := b.doErr(http.MethodGet, other.url+"/me", nil)
				if err != nil || me.status != http.StatusOK || !strings.Contains(me.body, ">"+name+"<") {
					errs <- fmt.Errorf("%s on %s: %d %q %v", name, other.srv.name, me.status, me.title(), err)
					return
				}
				if strings.Count(me.body, "@contoso.example") != 2 { // #user and the API's preferred_username
					errs <- fmt.Errorf("%s's page names another user:\n%s", name, me.body)
					return
				}
			}
			if _, err := b.doErr(http.MethodPost, other.url+"/signout", url.Values{}); err != nil {
				errs <- err
				return
			}
			if me, err := b.doErr(http.MethodGet, in.url+"/me", nil); err != nil || me.status != http.StatusUnauthorized {
				errs <- fmt.Errorf("%s after sign-out: %d %q %v", name, me.status, me.title(), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
