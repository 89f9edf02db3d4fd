// The model card registers the site's service worker too: a visit that starts here (a shared link) then also leaves
// the classifier working offline, since the worker precaches the whole site. The classifier page says whether offline
// use is ready; this page has nothing to say about it, so a browser without service workers just goes without.
navigator.serviceWorker?.register('sw.js').catch(() => {});
