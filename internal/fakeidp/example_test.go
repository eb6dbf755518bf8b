package fakeidp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
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

// A web app signs a user in with the authorization code flow and calls the
// me API; as a daemon, the same confidential client gets a token in each of
// two tenants.
func Example_confidential() {
	idp, err := fakeidp.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer idp.Close()
	const callback = "https://app.example/callback" // the web app's; SignIn returns the redirect
	err = idp.RegisterClient(fakeidp.ConfidentialClient{ID: "web-app", Secret: "s3cret", RedirectURIs: []string{callback}})
	if err != nil {
		log.Fatal(err)
	}
	alice, err := idp.AddUser(idp.Tenant(), "alice@contoso.example")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := idp.AddTenant("fabrikam"); err != nil {
		log.Fatal(err)
	}
	cred, err := confidential.NewCredFromSecret("s3cret")
	if err != nil {
		log.Fatal(err)
	}
	app, err := confidential.New(idp.Authority(), "web-app", cred, idp.ConfidentialOptions()...)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	res, err := idp.AuthCodeLogin(ctx, app, "web-app", callback, alice.Username, []string{fakeidp.MeScope})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Account.HomeAccountID == alice.HomeAccountID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, idp.MeURL(), nil)
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+res.AccessToken)
	resp, err := idp.HTTPClient().Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var me fakeidp.Me
	if err := json.NewDecoder(resp.Body).Decode(&me); err != nil {
		log.Fatal(err)
	}
	fmt.Println(me.Name, me.ExpiresAt.Sub(res.ExpiresOn).Abs() < time.Minute)

	for _, tenant := range []string{idp.Tenant(), "fabrikam"} {
		if _, err := app.AcquireTokenByCredential(ctx, []string{"api://downstream/.default"}, confidential.WithTenantID(tenant)); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(idp.TenantRequests("fabrikam").ClientCredentialsGrant, idp.Requests().TokensIssued)
	// Output:
	// true
	// alice true
	// 1 3
}
