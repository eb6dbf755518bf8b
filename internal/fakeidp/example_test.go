package fakeidp_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"
	"github.com/msalcache/msalcache/internal/fakeidp"
)

// A device code login with the real MSAL Go client against a local server.
func Example() {
	idp, err := fakeidp.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer idp.Close()

	app, err := public.New("my-client-id",
		public.WithAuthority(idp.Authority()),
		public.WithInstanceDiscovery(false), // talk to this host only
		public.WithHTTPClient(idp.HTTPClient()),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	idp.SetNextUser("alice@contoso.example")
	dc, err := app.AcquireTokenByDeviceCode(ctx, []string{"api://demo/read"})
	if err != nil {
		log.Fatal(err)
	}
	res, err := dc.AuthenticationResult(ctx) // approved at once
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Account.PreferredUsername)

	// The same scope again comes from MSAL's cache; a new scope redeems the
	// refresh token.
	for _, scope := range []string{"api://demo/read", "api://demo/write"} {
		if _, err := app.AcquireTokenSilent(ctx, []string{scope}, public.WithSilentAccount(res.Account)); err != nil {
			log.Fatal(err)
		}
	}
	c := idp.Requests()
	fmt.Printf("device code logins %d, refreshes %d, tokens %d\n", c.DeviceCode, c.RefreshTokenGrant, c.TokensIssued)
	// Output:
	// alice@contoso.example
	// device code logins 1, refreshes 1, tokens 2
}
