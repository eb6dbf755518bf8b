package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache"
)

func cmdAccounts(ctx context.Context, e *env, args []string) error {
	var o options
	f := newFlags(e, "accounts", "[flags]", `
Lists the accounts signed in to the token cache, one per line: username, then
home account ID and tenant. No account is not an error.`)
	f.appFlags(&o)
	f.cacheFlags(&o)
	f.fs.BoolVar(&o.json, "json", false, "print a JSON array")
	if err := f.parseNoArgs(args); err != nil {
		return err
	}
	_, c, accounts, err := f.signedIn(ctx, &o, e)
	if err != nil {
		return err
	}
	defer c.Close()
	if o.json {
		list := make([]accountJSON, len(accounts))
		for i, a := range accounts {
			list[i] = accountOf(a)
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if len(accounts) == 0 {
		fmt.Fprintln(e.stdout, "No signed-in accounts.")
		return nil
	}
	for _, a := range accounts {
		fmt.Fprintf(e.stdout, "%s\t(home account ID %s, tenant %s)\n", a.PreferredUsername, a.HomeAccountID, a.Realm)
	}
	return nil
}

func cmdLogout(ctx context.Context, e *env, args []string) error {
	var o options
	var all bool
	f := newFlags(e, "logout", "[flags] [--all | USER]", `
Signs out: removes USER's tokens (a username or home account ID; it may be
left out when one account is signed in) from the token cache. --all removes
the token cache file itself, signing everyone out in every process that
shares it; it needs no --client-id.`)
	f.appFlags(&o)
	f.cacheFlags(&o)
	f.fs.BoolVar(&all, "all", false, "sign out every account: remove the token cache")
	rest, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(rest) > 1 {
		return usageError("give one USER at most")
	}
	if all {
		if len(rest) > 0 {
			return usageError("give --all or USER, not both")
		}
		if err := f.checkCache(&o); err != nil {
			return err
		}
		c, err := msalcache.New(o.cachePath, o.cacheOptions(warnLogger(e.stderr))...)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Clear(ctx); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "Signed out everyone: removed %s.\n", c.Path())
		return nil
	}
	app, c, accounts, err := f.signedIn(ctx, &o, e)
	if err != nil {
		return err
	}
	defer c.Close()
	var remove []public.Account
	switch {
	case len(rest) == 1:
		for _, a := range accounts {
			if strings.EqualFold(a.PreferredUsername, rest[0]) || a.HomeAccountID == rest[0] {
				remove = append(remove, a)
			}
		}
		if len(remove) == 0 {
			return fmt.Errorf("%s is not signed in (signed in: %s)", rest[0], orNone(usernames(accounts)))
		}
	case len(accounts) == 0:
		fmt.Fprintln(e.stdout, "No account is signed in.")
		return nil
	case len(accounts) == 1:
		remove = accounts
	default:
		return usageError("%d accounts are signed in (%s): name one, or give --all", len(accounts), usernames(accounts))
	}
	var errs []error
	for _, a := range remove {
		if err := app.RemoveAccount(ctx, a); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.PreferredUsername, err))
			continue
		}
		fmt.Fprintf(e.stdout, "Signed out %s.\n", a.PreferredUsername)
	}
	return errors.Join(errs...)
}

func orNone(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}
