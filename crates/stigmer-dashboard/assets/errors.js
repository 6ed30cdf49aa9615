// Loaded first, as a classic script, so that an error anywhere later (even while the modules
// load) is recorded: the browser tests assert that `window.__errors` stays empty.
window.__errors = [];
window.addEventListener('error', (event) => {
  window.__errors.push(String(event.message || event.error || 'error'));
});
window.addEventListener('unhandledrejection', (event) => {
  window.__errors.push('unhandled rejection: ' + String((event.reason && event.reason.message) || event.reason));
});
