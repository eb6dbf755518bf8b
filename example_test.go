package msalcache_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/fakeidp"
)

// Wiring msalcache into MSAL Go. The local identity provider stands in for
// Microsoft Entra ID, and the plaintext option for the platform protection,
// so the example runs anywhere; a real app omits WithPlaintext and the
// fakeidp lines.
func Example() {
	idp, err := fakeidp.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer idp.Close()
	dir, err := os.MkdirTemp("", "msalcache-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(dir)
	path := filepath.Join(dir, "msal.cache")
	defer os.Remove(path)
	ctx := context.Background()
	scopes := []string{"api://example/read"}

	newApp := func() public.Client {
		c, err := msalcache.New(path, msalcache.WithPlaintext())
		if err != nil {
			log.Fatal(err)
		}
		app, err := public.New("my-client-id",
			public.WithAuthority(idp.Authority()),
			public.WithInstanceDiscovery(false),
			public.WithHTTPClient(idp.HTTPClient()),
			public.WithCache(c))
		if err != nil {
			log.Fatal(err)
		}
		return app
	}

	// Sign in once (the local provider approves device codes at once).
	dc, err := newApp().AcquireTokenByDeviceCode(ctx, scopes)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := dc.AuthenticationResult(ctx); err != nil {
		log.Fatal(err)
	}

	// Later, as a new process would: the token comes from the file.
	app := newApp()
	accounts, err := app.Accounts(ctx)
	if err != nil {
		log.Fatal(err)
	}
	before := idp.Requests().Token
	res, err := app.AcquireTokenSilent(ctx, scopes, public.WithSilentAccount(accounts[0]))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("signed in as", res.Account.PreferredUsername)
	fmt.Println("token requests for the silent call:", idp.Requests().Token-before)
	// Output:
	// signed in as user1@contoso.example
	// token requests for the silent call: 0
}
