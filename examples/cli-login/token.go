package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"
)

func cmdToken(ctx context.Context, e *env, args []string) error {
	var o options
	f := newFlags(e, "token", "[flags]", `
Prints an access token for --scopes to standard output, silently: from the
token cache, or by redeeming the cached refresh token. It never prompts: when
a sign-in is needed it exits with status 3 and says to run 'cli-login login'.
Printing the token is this command's purpose; treat its output as a secret.`)
	f.appFlags(&o)
	f.scopesFlag(&o)
	f.cacheFlags(&o)
	f.string(&o.account, "account", envAccount, "", "username or home account ID of the account to use (needed when several are signed in)")
	f.fs.BoolVar(&o.json, "json", false, "print JSON: access_token, expires_on, scopes and account")
	if err := f.parseNoArgs(args); err != nil {
		return err
	}
	if err := f.checkApp(&o); err != nil {
		return err
	}
	// Bound the whole call: the cache waits are bounded, and so is the
	// network when a refresh token is redeemed.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	app, c, err := o.open(e)
	if err != nil {
		return err
	}
	defer c.Close()
	acct, err := pickAccount(ctx, app, o.account)
	if err != nil {
		return err
	}
	res, err := app.AcquireTokenSilent(ctx, o.scopeList(), public.WithSilentAccount(acct))
	if err != nil {
		if ctx.Err() == nil && needsSignIn(err) {
			return signInError("sign-in needed for %s: run 'cli-login login' (%s)", acct.PreferredUsername, oneLine(err.Error()))
		}
		return err
	}
	if !o.json {
		_, err := fmt.Fprintln(e.stdout, res.AccessToken)
		return err
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(tokenJSON{
		AccessToken: res.AccessToken,
		ExpiresOn:   res.ExpiresOn.UTC(),
		Scopes:      res.GrantedScopes,
		Account:     accountOf(res.Account),
	})
}

type tokenJSON struct {
	AccessToken string      `json:"access_token"`
	ExpiresOn   time.Time   `json:"expires_on"`
	Scopes      []string    `json:"scopes"`
	Account     accountJSON `json:"account"`
}

type accountJSON struct {
	Username      string `json:"username"`
	HomeAccountID string `json:"home_account_id"`
	Environment   string `json:"environment"`
	TenantID      string `json:"tenant_id"`
}

func accountOf(a public.Account) accountJSON {
	return accountJSON{a.PreferredUsername, a.HomeAccountID, a.Environment, a.Realm}
}

// pickAccount returns the signed-in account named want (a username or home
// account ID), or the only one if want is empty.
func pickAccount(ctx context.Context, app public.Client, want string) (public.Account, error) {
	accounts, err := app.Accounts(ctx)
	if err != nil {
		return public.Account{}, err
	}
	if want != "" {
		for _, a := range accounts {
			if strings.EqualFold(a.PreferredUsername, want) || a.HomeAccountID == want {
				return a, nil
			}
		}
		return public.Account{}, signInError("%s is not signed in: run 'cli-login login'", want)
	}
	switch len(accounts) {
	case 0:
		return public.Account{}, signInError("not signed in: run 'cli-login login'")
	case 1:
		return accounts[0], nil
	}
	return public.Account{}, usageError("%d accounts are signed in (%s): choose one with --account", len(accounts), usernames(accounts))
}

func usernames(accounts []public.Account) string {
	names := make([]string, len(accounts))
	for i, a := range accounts {
		names[i] = a.PreferredUsername
	}
	return strings.Join(names, ", ")
}

// needsSignIn tells whether a silent call failed because the user must sign
// in again: MSAL Go found no refresh token, or the identity provider
// rejected it (HTTP 400: invalid_grant, interaction_required).
func needsSignIn(err error) bool {
	var ce msalerrors.CallErr
	if errors.As(err, &ce) {
		return ce.Resp != nil && (ce.Resp.StatusCode == 400 || ce.Resp.StatusCode == 401)
	}
	// MSAL Go's own error, matched by its text: it has no type.
	return strings.Contains(err.Error(), "no token found")
}
