package msalcache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/internal/testdir"
)

// readSections reads a plaintext cache file as sections of raw entries.
func readSections(t testing.TB, path string) map[string]map[string]json.RawMessage {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return top
}

func writeSections(t testing.TB, path string, top any) {
	t.Helper()
	raw, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// badAccessToken is an access token entry like entry but with an expiry
// MSAL cannot read.
func badAccessToken(t testing.TB, entry json.RawMessage) json.RawMessage {
	t.Helper()
	var fields map[string]any
	if err := json.Unmarshal(entry, &fields); err != nil {
		t.Fatal(err)
	}
	fields["expires_on"] = map[string]any{"not": "a time"}
	fields["secret"] = "the-bad-entry's-token"
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOneBadEntryCostsOneEntry: a file holding ten signed-in accounts and one
// entry MSAL rejects. Another process reads it, signs a new user in and
// writes: the ten stay signed in (silently, from the cache), the bad entry
// is dropped from the file and kept in the copy.
func TestOneBadEntryCostsOneEntry(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	first := mustApp(t, s, openCache(t, path, plaintextMode))
	const users = 10
	for range users {
		mustLogin(t, first, scope("read"))
	}
	top := readSections(t, path)
	if len(top["RefreshToken"]) != users {
		t.Fatalf("%d refresh tokens after %d sign-ins", len(top["RefreshToken"]), users)
	}
	for key, entry := range top["AccessToken"] {
		top["AccessToken"][key+"-bad"] = badAccessToken(t, entry)
		break
	}
	writeSections(t, path, top)
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// Another process: it sees the ten, and signs an eleventh user in.
	var log bytes.Buffer
	other := mustApp(t, s, openCache(t, path, plaintextMode, WithLogger(slog.New(slog.NewTextHandler(&log, nil)))))
	accounts, err := other.Accounts(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "WARN") {
		t.Fatalf("no warning: MSAL did not reject the planted entry, so the test tests nothing: %s", log.String())
	}
	if len(accounts) != users {
		t.Errorf("another process sees %d accounts in the file with one bad entry, want %d", len(accounts), users)
	}
	mustLogin(t, other, scope("read"))

	// A third process: eleven accounts, each of the ten served silently.
	third := mustApp(t, s, openCache(t, path, plaintextMode))
	accounts, err = third.Accounts(testCtx(t))
	if err != nil || len(accounts) != users+1 {
		t.Fatalf("after the other process wrote: %d accounts (%v), want %d", len(accounts), err, users+1)
	}
	before := s.Requests().Token
	for _, a := range accounts {
		if _, err := third.AcquireTokenSilent(testCtx(t), []string{scope("read")}, public.WithSilentAccount(a)); err != nil {
			t.Errorf("%s is no longer signed in: %v", a.PreferredUsername, err)
		}
	}
	if n := s.Requests().Token - before; n != 0 {
		t.Errorf("%d token requests for silent calls that the cache should serve", n)
	}
	if got := readSections(t, path)["AccessToken"]; len(got) != users+1 {
		t.Errorf("the file holds %d access tokens, want %d (the bad one dropped)", len(got), users+1)
	}
	copies := quarantined(t, path)
	if len(copies) != 1 {
		t.Fatalf("copies of the file with the bad entry: %v, want one", copies)
	}
	if kept, err := os.ReadFile(copies[0]); err != nil || !bytes.Equal(kept, original) {
		t.Errorf("the copy does not hold the file as it was: %v", err)
	}
	if strings.Contains(log.String(), "the-bad-entry's-token") {
		t.Errorf("the log quotes the bad entry's token: %s", log.String())
	}
	t.Logf("warning: %s", fmt.Sprint(strings.TrimSpace(log.String())))
}
