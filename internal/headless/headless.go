// Package headless starts Chromium the way every browser test and the
// web-app demo of this module run it: headless, as root in a container (no
// sandbox), quiet (no background traffic, no updates, no sync), in a
// profile of its own, with nothing of the caller's environment.
package headless

import (
	"errors"
	"os"
	"os/exec"

	"github.com/chromedp/chromedp"
)

// Find returns the path of a Chromium or Chrome binary.
func Find() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no Chromium found: install the chromium package (apt-get install -y chromium)")
}

// Flags are the flags Chromium runs with, in the profile directory
// profile, with a window of width × height.
func Flags(profile string, width, height int) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.Flag("headless", "new"),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(width, height),
		// Nothing of this process's environment (it may hold a client
		// secret). Chromium's socket directory stays in the temporary
		// directory: a Unix socket path inside a deep profile could be too
		// long. It removes that directory when it is closed gracefully.
		chromedp.NoInheritEnv,
		chromedp.Env("PATH="+os.Getenv("PATH"), "HOME="+profile, "TMPDIR="+os.TempDir()),
	}
}
