// A minimal browser XMLHttpRequest for Node.js, enough for the Kuzzle SDK's Http protocol, with a
// browser-like cookie jar: the SDK enables its cookie mode (`cookieAuth: true`) only where
// `XMLHttpRequest` exists. Like a browser, the jar takes `Set-Cookie` from responses and sends
// `Cookie` only for requests with `withCredentials`, drops cookies whose `Max-Age` is 0 or whose
// `Expires` has passed, and never shows `Set-Cookie` to the page (`getResponseHeader`).
//
// Used by cookie_auth.mjs. One host: the jar ignores Domain and Path (Tollgate sets `Path=/`).

import http from 'node:http';

export const jar = {
  // name → value
  cookies: new Map(),
  // every Set-Cookie field received, as sent
  received: [],
};

function store(fields) {
  for (const field of fields) {
    jar.received.push(field);
    const [pair, ...attributes] = field.split(';').map((s) => s.trim());
    const eq = pair.indexOf('=');
    if (eq < 1) continue;
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    let expired = false;
    for (const attribute of attributes) {
      const [key, v = ''] = attribute.split('=');
      if (key.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
      if (key.toLowerCase() === 'expires' && Date.parse(v) <= Date.now()) expired = true;
    }
    if (expired) jar.cookies.delete(name);
    else jar.cookies.set(name, value);
  }
}

class NodeXMLHttpRequest {
  constructor() {
    this.readyState = 0;
    this.status = 0;
    this.responseText = '';
    this.withCredentials = false;
    this.timeout = 0;
    this.onload = null;
    this.onreadystatechange = null;
    this._headers = {};
    this._response = {};
  }

  open(method, url) {
    this._method = method;
    this._url = new URL(url);
    this.readyState = 1;
  }

  setRequestHeader(name, value) {
    this._headers[name] = String(value);
  }

  getResponseHeader(name) {
    const key = name.toLowerCase();
    // Browsers never show Set-Cookie to scripts.
    if (key === 'set-cookie' || key === 'set-cookie2') return null;
    const value = this._response[key];
    if (value === undefined) return null;
    return Array.isArray(value) ? value.join(', ') : String(value);
  }

  send(body) {
    const headers = { ...this._headers };
    if (this.withCredentials && jar.cookies.size > 0) {
      headers.Cookie = [...jar.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    }
    const payload = body === undefined || body === null ? null : String(body);
    if (payload !== null) headers['Content-Length'] = Buffer.byteLength(payload);
    const done = () => {
      this.readyState = 4;
      if (this.onreadystatechange) this.onreadystatechange();
    };
    const req = http.request(this._url, { method: this._method, headers }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => {
        this.status = res.statusCode;
        this._response = res.headers;
        this.responseText = Buffer.concat(chunks).toString('utf8');
        // A cross-origin response's cookies are kept only for a credentialed request.
        if (this.withCredentials) store(res.headers['set-cookie'] || []);
        done();
        if (this.onload) this.onload();
      });
    });
    req.on('error', () => {
      this.status = 0;
      done();
    });
    if (payload !== null) req.write(payload);
    req.end();
  }
}

export function installXMLHttpRequest() {
  globalThis.XMLHttpRequest = NodeXMLHttpRequest;
}
