package msalcache_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache"
)

// Wiring msalcache into MSAL Go. A real app keeps the cache in a directory of
// its own (say, under os.UserCacheDir) and omits WithPlaintext, so the file is
// encrypted with the platform protection; the plaintext option lets this
// example run on a machine without a keyring.
func Example() {
	dir, err := os.MkdirTemp("", "msalcache-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	c, err := msalcache.New(filepath.Join(dir, "msal.cache"), msalcache.WithPlaintext())
	if err != nil {
		log.Fatal(err) // without WithPlaintext: wraps persistence.ErrUnavailable when no keyring is usable
	}
	app, err := public.New("00000000-0000-0000-0000-000000000000",
		public.WithAuthority("https://login.microsoftonline.com/organizations"),
		public.WithCache(c))
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	accounts, err := app.Accounts(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if len(accounts) > 0 {
		// Signed in earlier, maybe by another process: no prompt needed.
		res, err := app.AcquireTokenSilent(ctx, []string{"User.Read"}, public.WithSilentAccount(accounts[0]))
		if err == nil {
			fmt.Println("token for", res.Account.PreferredUsername)
			return
		}
	}
	// Otherwise sign in interactively (app.AcquireTokenInteractive or
	// app.AcquireTokenByDeviceCode); MSAL then saves the tokens through c.
	fmt.Println("protection:", c.Protection())
	fmt.Println("signed-in accounts:", len(accounts))
	// Output:
	// protection: plaintext
	// signed-in accounts: 0
}
