// The site's service worker, sw.js beside the pages: it precaches the whole site, so that pages and model work
// without a network. Every page registers it, so that a visit starting on any of them (a shared link to the model
// card) leaves the classifier working offline.

export const offlineSupported = 'serviceWorker' in navigator;

/** Registers the service worker; resolves once it is active. */
export async function registerServiceWorker() {
  await navigator.serviceWorker.register('sw.js');
  return navigator.serviceWorker.ready;
}
