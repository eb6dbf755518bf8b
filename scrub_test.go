package msalcache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/internal/testdir"
)

// The markers planted in cache files: whatever quotes them leaks cache
// content. The number is one too, for decoders that quote numbers.
const (
	secretMarker = "PLANTED-SECRET"
	numberMarker = "98765432123456789"
)

// TestNoSecretInLogsOrErrors plants a secret in every field of every entry
// of a real MSAL cache, one field at a time and in every JSON type, so that
// MSAL or the JSON parser rejects it; and in files of every wrong shape. All
// the tokens in the file are secrets too. Real MSAL clients then read the
// file, use it and (for a share of the files) write it: no log record (at every level) and no error
// may quote any of it.
func TestNoSecretInLogsOrErrors(t *testing.T) {
	s := startIDP(t)
	dir := testdir.New(t)
	path := filepath.Join(dir, "msal.cache")
	mustLogin(t, mustApp(t, s, openCache(t, path, plaintextMode)), scope("read"))

	// A valid cache whose every secret is a marker.
	base := map[string]map[string]map[string]any{}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &base); err != nil {
		t.Fatal(err)
	}
	for _, section := range base {
		for _, entry := range section {
			if _, ok := entry["secret"]; ok {
				entry["secret"] = secretMarker + "-token"
			}
		}
	}
	encode := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	clone := func() map[string]map[string]map[string]any {
		var c map[string]map[string]map[string]any
		if err := json.Unmarshal(encode(base), &c); err != nil {
			t.Fatal(err)
		}
		return c
	}

	files := map[string][]byte{
		"top-level array":         []byte(`["` + secretMarker + `"]`),
		"top-level string":        []byte(`"` + secretMarker + `"`),
		"top-level number":        []byte(numberMarker),
		"section is a string":     []byte(`{"RefreshToken":"` + secretMarker + `"}`),
		"section is a number":     []byte(`{"RefreshToken":` + numberMarker + `}`),
		"section is an array":     []byte(`{"RefreshToken":["` + secretMarker + `"]}`),
		"entry is a string":       []byte(`{"RefreshToken":{"k":"` + secretMarker + `"}}`),
		"entry is a number":       []byte(`{"RefreshToken":{"k":` + numberMarker + `}}`),
		"entry is an array":       []byte(`{"RefreshToken":{"k":["` + secretMarker + `"]}}`),
		"truncated":               []byte(`{"RefreshToken":{"k":{"secret":"` + secretMarker),
		"trailing garbage":        []byte(`{"RefreshToken":{"k":{"secret":"` + secretMarker + `"}}} ` + secretMarker),
		"bad escape in an entry":  []byte(`{"RefreshToken":{"k":{"secret":"` + secretMarker + `\q"}}}`),
		"control character":       []byte("{\"RefreshToken\":{\"k\":{\"secret\":\"" + secretMarker + "\x01\"}}}"),
		"number where MSAL wants": encode(map[string]any{"AccessToken": map[string]any{"k": map[string]any{"expires_on": json.Number(numberMarker), "secret": secretMarker}}}),
	}
	values := map[string]any{
		"string": secretMarker,
		"object": map[string]any{"x": secretMarker},
		"array":  []any{secretMarker},
		"number": json.Number(numberMarker),
		"bool":   true,
	}
	for _, sname := range slices.Sorted(maps.Keys(base)) {
		for key, entry := range base[sname] {
			for _, field := range slices.Sorted(maps.Keys(entry)) {
				for vname, v := range values {
					c := clone()
					c[sname][key][field] = v
					files[fmt.Sprintf("%s.%s as %s", sname, field, vname)] = encode(c)
				}
			}
		}
	}

	rejected := 0
	for _, name := range slices.Sorted(maps.Keys(files)) {
		var log bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		if err := os.WriteFile(path, files[name], 0o600); err != nil {
			t.Fatal(err)
		}
		for _, q := range quarantined(t, path) {
			os.Remove(q)
		}
		var errs []error
		c, err := New(path, WithPlaintext(), WithLogger(logger))
		if err != nil {
			t.Fatal(err)
		}
		app := mustApp(t, s, c)
		accounts, err := app.Accounts(testCtx(t))
		errs = append(errs, err)
		for _, a := range accounts {
			_, err := app.AcquireTokenSilent(testCtx(t), []string{scope("read")}, public.WithSilentAccount(a))
			errs = append(errs, err)
		}
		if !strings.Contains(name, " as ") || strings.HasSuffix(name, " as string") {
			// A sign-in writes the file: the copy aside, the merge.
			_, err = login(testCtx(t), app, scope("read"))
			errs = append(errs, err)
		}
		errs = append(errs, c.Export(testCtx(t), badMarshaler{}, cache.ExportHints{}))
		if log.Len() > 0 {
			rejected++
		}
		for _, err := range errs {
			if err != nil && leaks(err.Error()) {
				t.Errorf("%s: an error quotes cache content: %v", name, err)
			}
		}
		if leaks(log.String()) {
			t.Errorf("%s: the log quotes cache content:\n%s", name, log.String())
		}
	}
	t.Logf("%d bad files, %d of them warned about", len(files), rejected)
	if rejected < len(files)/3 {
		t.Errorf("only %d of %d planted files were rejected: the test plants too little", rejected, len(files))
	}
}

func leaks(s string) bool {
	return strings.Contains(s, secretMarker) || strings.Contains(s, numberMarker) || strings.Contains(s, "PLANTED")
}

// badMarshaler is MSAL's cache object gone wrong: its JSON quotes a secret
// and does not parse.
type badMarshaler struct{}

func (badMarshaler) Marshal() ([]byte, error) {
	return []byte(`{"RefreshToken":{"k":{"secret":"` + secretMarker + `"}}} ` + secretMarker), nil
}
