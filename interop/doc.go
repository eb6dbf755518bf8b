// Package interop proves that msalcache shares a token cache file and its
// lock file with the real MSAL Node extensions (@azure/msal-node and
// @azure/msal-node-extensions, pinned in package-lock.json) and the real
// MSAL Python extensions (Debian's python3-msal and python3-msal-extensions).
// It has no API: its tests start Node processes (peer.mjs) and Python
// processes (peer.py) next to msalcache processes on one plaintext cache
// file and check what each side promises. See README.md in this directory
// for what is shared, in which modes, and the numbers.
//
// The Node tests need node on PATH and `npm ci --ignore-scripts` run in this
// directory; the Python tests (Linux only) need a python3 that imports msal
// and msal_extensions. Without them they skip, or fail when
// MSALCACHE_REQUIRE_SERVICES=1.
package interop
