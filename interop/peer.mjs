// peer.mjs: a Node process on an MSAL token cache file, through the real
// @azure/msal-node TokenCache and @azure/msal-node-extensions'
// PersistenceCachePlugin + FilePersistence (plaintext), exactly as a Node app
// configures them. The Go tests in this directory start it next to msalcache
// processes on the same file.
//
//   node peer.mjs write <cache> <id> <count>   add <count> access tokens, one write access each
//   node peer.mjs hold <cache>                 take the plugin's lock, print "locked", wait to be killed
//   node peer.mjs dump <cache>                 print the cache as msal-node loads it
//
// Environment:
//   PEER_MARKER       a file created with O_EXCL right after the plugin's lock is
//                     acquired and removed right before it is released; another
//                     process's marker there means both held the lock at once
//   PEER_RETRY_DELAY  CrossPlatformLock retry delay in ms (library default 100)
//   PEER_RETRY_NUMBER CrossPlatformLock retries (library default 500)
//   PEER_START        "write" waits (at most 60 s) for this file before writing
//   PEER_STOP         "write" stops early, before <count>, once this file exists
//   PEER_PAUSE        "write" waits 0 to this many ms between writes (default 0),
//                     as an app does between token requests
//   PEER_TURN         "write" takes turns with another writer: before write i > 0 it
//                     waits (at most 60 s) for "<PEER_TURN>.other.<i-1>"; after
//                     write i it creates "<PEER_TURN>.peer.<i>"
//
// "write" prints one JSON report on stdout: writes done, marker collisions,
// files found invalid under the lock, and the keys this process's saves
// removed from the file (entries another process wrote that msal-node's
// in-memory cache did not have because it skipped the reload).
//
// The package's exports field allows only its index, which loads keytar (a
// native module that is not built here), so the two modules are imported by
// file URL from its dist directory.

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { createRequire } from "node:module";
import { PublicClientApplication, TokenCacheContext } from "@azure/msal-node";

const require = createRequire(import.meta.url);
const extDist = path.join(
  path.dirname(require.resolve("@azure/msal-node-extensions/package.json")),
  "dist",
);
const { FilePersistence } = await import(
  pathToFileURL(path.join(extDist, "persistence", "FilePersistence.mjs")).href
);
const { PersistenceCachePlugin } = await import(
  pathToFileURL(path.join(extDist, "persistence", "PersistenceCachePlugin.mjs")).href
);

const clientId = "0b6d4f1e-6f0a-4c53-9a39-3f2c1d5e7a11";
const sections = ["Account", "IdToken", "AccessToken", "RefreshToken", "AppMetadata"];

const report = {
  pid: process.pid,
  writes: 0,
  overlaps: 0, // marker already present when this process took the lock
  invalidUnderLock: 0, // file not MSAL JSON while this process held the lock
  reloadsSkipped: 0, // write accesses that took the lock without reading the file
  destroyed: [], // "Section/key" removed from the file by this process's saves
};

function envInt(name, def) {
  const v = process.env[name];
  return v ? Number.parseInt(v, 10) : def;
}

// open builds a real PublicClientApplication whose cache plugin is
// PersistenceCachePlugin over FilePersistence, instrumented without changing
// what it does.
async function open(cachePath) {
  const persistence = await FilePersistence.create(cachePath);
  const plugin = new PersistenceCachePlugin(persistence, {
    retryNumber: envInt("PEER_RETRY_NUMBER", 500),
    retryDelay: envInt("PEER_RETRY_DELAY", 100),
  });
  const marker = process.env.PEER_MARKER;
  const lock = plugin.crossPlatformLock;
  let holdsMarker = false;

  const realLock = lock.lock.bind(lock);
  lock.lock = async () => {
    await realLock();
    if (marker) {
      try {
        fs.closeSync(fs.openSync(marker, "wx"));
        holdsMarker = true;
      } catch (err) {
        if (err.code !== "EEXIST") throw err;
        report.overlaps++;
      }
    }
  };
  const realUnlock = lock.unlock.bind(lock);
  lock.unlock = async () => {
    if (holdsMarker) {
      holdsMarker = false;
      fs.unlinkSync(marker);
    }
    await realUnlock();
  };

  const realReload = persistence.reloadNecessary.bind(persistence);
  persistence.reloadNecessary = async (lastSync) => {
    const r = await realReload(lastSync);
    if (!r) report.reloadsSkipped++;
    return r;
  };

  // save runs in afterCacheAccess with the lock held: compare what is on
  // disk now with what msal-node is about to write.
  const realSave = persistence.save.bind(persistence);
  persistence.save = async (contents) => {
    const onDisk = parse(fs.readFileSync(cachePath, "utf-8"));
    const next = parse(contents);
    if (onDisk === undefined || next === undefined) report.invalidUnderLock++;
    for (const s of sections) {
      for (const key of Object.keys(onDisk?.[s] ?? {})) {
        if (!next?.[s] || !(key in next[s])) report.destroyed.push(`${s}/${key}`);
      }
    }
    await realSave(contents);
  };

  const app = new PublicClientApplication({
    auth: { clientId },
    cache: { cachePlugin: plugin },
  });
  return { app, plugin, tokenCache: app.getTokenCache() };
}

// parse returns the MSAL JSON object in text, {} for an empty file (what
// FilePersistence.create leaves), or undefined if text is not MSAL JSON.
function parse(text) {
  if (text.trim() === "") return {};
  try {
    const v = JSON.parse(text);
    return v !== null && typeof v === "object" && !Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

// accessToken is an entity as msal-common builds it from a token response.
function accessToken(id, i) {
  const now = Math.floor(Date.now() / 1000);
  return {
    homeAccountId: `${id}-uid.interop-tenant`,
    environment: "login.interop.example",
    credentialType: "AccessToken",
    clientId,
    secret: `node-secret-${id}-${i}`,
    realm: "interop-tenant",
    target: `api://interop/${id}/${i}`,
    cachedAt: String(now),
    expiresOn: String(now + 3600),
    extendedExpiresOn: String(now + 3600),
    tokenType: "Bearer",
  };
}

// write does what msal-common's ResponseHandler does when it caches a token
// response: beforeCacheAccess with a changed-cache context (the plugin keeps
// the lock), store the entity, afterCacheAccess (save, unlock).
async function write(cachePath, id, count) {
  const { plugin, tokenCache } = await open(cachePath);
  await waitStart(id);
  const start = Date.now();
  const stop = process.env.PEER_STOP;
  const pauseMs = envInt("PEER_PAUSE", 0);
  const turn = process.env.PEER_TURN;
  for (let i = 0; i < count && !(stop && fs.existsSync(stop)); i++) {
    if (i > 0 && pauseMs > 0) await sleep(Math.random() * pauseMs);
    if (i > 0 && turn) await waitFile(`${turn}.other.${i - 1}`, `the other writer's turn ${i - 1}`, 1);
    const ctx = new TokenCacheContext(tokenCache, true);
    await plugin.beforeCacheAccess(ctx);
    try {
      await tokenCache.storage.setAccessTokenCredential(accessToken(id, i), "");
    } finally {
      await plugin.afterCacheAccess(ctx);
    }
    report.writes++;
    if (turn) fs.writeFileSync(`${turn}.peer.${i}`, "");
  }
  report.ms = Date.now() - start;
  process.stdout.write(JSON.stringify(report) + "\n");
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// waitStart says this writer is ready ("<gate>.ready.<id>") and waits for
// the start gate, so that all writers begin together.
async function waitStart(id) {
  const gate = process.env.PEER_START;
  if (!gate) return;
  fs.writeFileSync(`${gate}.ready.${id}`, "");
  await waitFile(gate, "the start gate", 5);
}

// waitFile waits (at most 60 s) for a file to exist, looking every pollMs.
async function waitFile(file, what, pollMs) {
  const deadline = Date.now() + 60_000;
  while (!fs.existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`${what} did not come within 60 s`);
    await sleep(pollMs);
  }
}

// hold takes the lock the way a write access does and never releases it.
async function hold(cachePath) {
  const { plugin, tokenCache } = await open(cachePath);
  await plugin.beforeCacheAccess(new TokenCacheContext(tokenCache, true));
  process.stdout.write("locked\n");
  setInterval(() => {}, 1 << 30);
}

// dump loads the cache as an app does (getAllAccounts is a read access) and
// prints what msal-node holds in memory: the accounts getAllAccounts returns
// (their home account ids), the usernames of the account entities, and the
// access tokens.
async function dump(cachePath) {
  const { tokenCache } = await open(cachePath);
  const accounts = await tokenCache.getAllAccounts();
  const state = JSON.parse(tokenCache.serialize());
  process.stdout.write(
    JSON.stringify({
      homeAccountIds: accounts.map((a) => a.homeAccountId),
      usernames: Object.values(state.Account ?? {}).map((a) => a.username),
      accessTokens: Object.keys(state.AccessToken ?? {}),
      secrets: Object.values(state.AccessToken ?? {}).map((t) => t.secret),
    }) + "\n",
  );
}

const [mode, cachePath, id, count] = process.argv.slice(2);
switch (mode) {
  case "write":
    await write(cachePath, id, Number.parseInt(count, 10));
    break;
  case "hold":
    await hold(cachePath);
    break;
  case "dump":
    await dump(cachePath);
    break;
  default:
    process.stderr.write(`usage: node peer.mjs write|hold|dump <cache> ...\n`);
    process.exit(2);
}
