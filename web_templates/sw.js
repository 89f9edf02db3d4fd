// Service worker: keeps this site's own files (page, model card, scripts, styles, TF.js runtime, model) in a
// cache so the classifier works offline after the first visit. Written by skinlesion/webapp.py at build time:
// VERSION changes whenever any file of the build does, and PRECACHE lists every file of the build.
//
// It stores nothing else: not your photos, not results, nothing from other sites. It answers same-origin GET
// requests only; everything else passes through untouched (and the page's CSP refuses other origins anyway).

const VERSION = {{ version|tojson }};

// Several sites can share one origin (user.github.io/repo-a/, /repo-b/): cache names carry this worker's
// scope, and only caches of this scope are ever deleted.
const PREFIX = `skinlesion:${self.registration.scope}:`;
const CACHE = PREFIX + VERSION;

// Relative to this file, so the site works under any path.
const PRECACHE = {{ precache|tojson }};

// Added to every page this worker answers: they make the page cross-origin isolated, which lets TF.js run
// WebAssembly on several threads, on hosts (GitHub Pages) that cannot send headers of their own. Every file of the
// site is same-origin, so requiring CORP/CORS of cross-origin resources blocks nothing the site uses.
const ISOLATION_HEADERS = {{ isolation_headers|tojson }};

function isolated(response) {
  if (response.type === 'opaqueredirect' || response.status === 0) return response;
  const headers = new Headers(response.headers);
  for (const [name, value] of Object.entries(ISOLATION_HEADERS)) headers.set(name, value);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // 'no-cache': revalidate with the server, so a stale HTTP-cached file from an older build never lands
    // in the new cache (unchanged files come back as a cheap 304).
    await cache.addAll(PRECACHE.map((url) => new Request(url, { cache: 'no-cache' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names
      .filter((name) => name.startsWith(PREFIX) && name !== CACHE)
      .map((name) => caches.delete(name)));
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    // A page opened with a query (index.html?backend=wasm) is still the cached page.
    const navigation = request.mode === 'navigate';
    const response = (await cache.match(request, { ignoreSearch: navigation })) ?? await fetch(request);
    return navigation ? isolated(response) : response;
  })());
});
