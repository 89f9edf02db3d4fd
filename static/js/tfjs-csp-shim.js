// Loaded as a classic script before tf.min.js. tf.min.js (ES5 build) bundles regenerator-runtime, which
// assigns the global `regeneratorRuntime` from strict code and, when that throws because the global does
// not exist, falls back to Function("r", "regeneratorRuntime = r"): string evaluation, which this site's
// Content-Security-Policy forbids (no 'unsafe-eval'), so tf.min.js would fail to load. Declaring the
// global first makes the plain assignment succeed.
var regeneratorRuntime; // eslint-disable-line no-unused-vars, no-var
