// The user's API key: kept in sessionStorage for this tab only, sent as the X-API-Key header,
// never written into the page URL (state.js) nor logged.

const STORAGE = "csdr.portal.key";

export function currentKey() {
  return window.sessionStorage.getItem(STORAGE) || "";
}

export function setKey(key) {
  if (key) window.sessionStorage.setItem(STORAGE, key.trim());
  else window.sessionStorage.removeItem(STORAGE);
}

export function keyHeaders() {
  const key = currentKey();
  return key ? { "X-API-Key": key } : {};
}
