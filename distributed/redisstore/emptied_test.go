//go:build !windows

package redisstore

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/redistest"
)

// TestStoreComesBackEmpty restarts a real redis-server under a Cache: one
// without persistence comes back empty, and the Cache says so in one
// warning that names the cause and the fixes, and counts it; one with
// appendonly comes back with its data, and the Cache checks and says
// nothing. A FLUSHALL is reported too.
func TestStoreComesBackEmpty(t *testing.T) {
	const marker = distributed.DefaultKeyPrefix + "store-marker"
	for _, tc := range []struct {
		name    string
		args    []string
		emptied bool
	}{
		{"no persistence", nil, true},
		{"appendonly", []string{"--appendonly", "yes", "--appendfsync", "always"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, tc.args...)
			logs := &dcachetest.Logs{}
			c := dcachetest.NewCache(t, open(t, srv.URL()), distributed.WithLogger(slog.New(logs)),
				distributed.WithTimeout(500*time.Millisecond))
			idp := dcachetest.IDP(t)
			ctx := dcachetest.Ctx(t)
			app := dcachetest.WebApp(t, idp, c)
			dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(0), dcachetest.UserScope)
			waitFor(t, "the marker to be written at first use", func() bool {
				n, err := srv.Do("EXISTS", marker)
				return err == nil && n == int64(1)
			})
			checked := func() int {
				return logs.Count(slog.LevelDebug, "still holds its marker") + logs.Count(slog.LevelWarn, "came back empty")
			}
			before := checked()

			srv.Kill()
			srv.Restart()
			restarted := time.Now()
			waitFor(t, "the marker to be checked after the restart", func() bool { return checked() > before })
			t.Logf("the marker was checked %v after the restart", time.Since(restarted).Round(time.Millisecond))
			time.Sleep(300 * time.Millisecond) // any second warning would come now
			warnings := logs.Messages(slog.LevelWarn, "came back empty")
			if !tc.emptied {
				if len(warnings) != 0 || c.Stats().Emptied != 0 {
					t.Fatalf("a restart with appendonly was reported as emptied: %d warnings, Emptied %d", len(warnings), c.Stats().Emptied)
				}
				return
			}
			if len(warnings) != 1 || c.Stats().Emptied != 1 {
				t.Fatalf("an empty restart: %d warnings, Emptied %d; want 1, 1", len(warnings), c.Stats().Emptied)
			}
			t.Logf("the warning: %s", warnings[0])
			for _, want := range []string{"without persistence", "appendonly yes", "replicas", "distributed.Tiered"} {
				if !strings.Contains(warnings[0], want) {
					t.Errorf("the warning does not name %q", want)
				}
			}
			waitFor(t, "the marker to be written again", func() bool {
				n, err := srv.Do("EXISTS", marker)
				return err == nil && n == int64(1)
			})

			if _, err := srv.Do("FLUSHALL"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a FLUSHALL to be reported", func() bool { return c.Stats().Emptied == 2 })
			if n := len(logs.Messages(slog.LevelWarn, "came back empty")); n != 2 {
				t.Errorf("%d warnings after a restart and a flush, want 2", n)
			}
		})
	}
}
