// The model card says nothing about offline use (the classifier page does), so a failure here has no one to tell.
import { offlineSupported, registerServiceWorker } from './offline.js';

if (offlineSupported) registerServiceWorker().catch(() => {});
