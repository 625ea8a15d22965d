'use strict';
// An app on another origin, listed in --allowed-origins, loads pushgate.js
// from the gateway and connects over each transport. WebSocket needs only the
// gateway's Origin check; the browser also requires CORS response headers
// (Access-Control-Allow-Origin) before it hands an SSE stream, fetched or
// EventSource, to a page of another origin. An origin not listed is refused.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./harness');

const log = h.logPath;
let redis;
let gw;
let gwPort;
let browser;
let app;      // the app's own origin, allowed
let other;    // another origin, not allowed
const appPorts = {};

function appServer(name) {
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>${name}</title>` +
      `<script src="http://127.0.0.1:${gwPort}/pushgate.js"></script>`);
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => {
    appPorts[name] = srv.address().port;
    resolve(srv);
  }));
}

test.before(async () => {
  const bin = h.preflight();
  redis = await h.startRedis(log('redis-cors'));
  gwPort = await h.freePort();
  app = await appServer('app');
  other = await appServer('other');
  gw = await h.startGateway(bin, {
    port: gwPort, redisPort: redis.port, logFile: log('pushgate-cors'),
    extraArgs: ['--allowed-origins', `http://127.0.0.1:${appPorts.app}`],
  });
  browser = await h.launchBrowser();
});

test.after(async () => {
  await h.stopAll({ browser, gw, redis });
  for (const s of [app, other]) if (s) await new Promise((r) => s.close(r));
});

// Opens the app page on `origin`, connects, publishes one broadcast message
// with FCALL once open, and resolves with what happened within `wait` ms.
async function tryTransport(t, origin, transport, wait = 8000) {
  const page = await browser.ctx.newPage();
  t.after(() => page.close().catch(() => {}));
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`http://127.0.0.1:${appPorts[origin]}/`);
  await page.waitForFunction(() => typeof window.PushGate === 'function', null, { timeout: 5000 });
  await page.evaluate(({ gw, transport }) => {
    window.result = { opened: false, messages: [], errors: [] };
    window.pg = new window.PushGate({ url: gw, transport, channels: [], events: ['cors'] });
    window.pg.on('open', () => { window.result.opened = true; });
    window.pg.on('message', (m) => window.result.messages.push(m));
    window.pg.on('error', (e) => window.result.errors.push(e.reason || String(e.code)));
  }, { gw: `http://127.0.0.1:${gwPort}`, transport });
  const opened = await page.waitForFunction(() => window.result.opened, null, { timeout: wait })
    .then(() => true, () => false);
  let id = null;
  if (opened) {
    id = await h.fcallPublish(redis.port, 'broadcast', { event: 'cors', data: { transport } });
    await page.waitForFunction((id) => window.result.messages.some((m) => m.id === id), id, { timeout: 8000 })
      .catch(() => {});
  }
  const result = await page.evaluate(() => { window.pg.close(); return window.result; });
  return { opened, id, got: result.messages.some((m) => m.id === id), errors: result.errors, pageErrors: errors };
}

test('GET /pushgate.js loads from another origin (classic script, no CORS needed)', { timeout: 30000 }, async (t) => {
  const page = await browser.ctx.newPage();
  t.after(() => page.close().catch(() => {}));
  await page.goto(`http://127.0.0.1:${appPorts.other}/`);
  assert.equal(await page.evaluate(() => typeof window.PushGate), 'function');
});

test('ws: an allowed origin connects and receives', { timeout: 30000 }, async (t) => {
  const r = await tryTransport(t, 'app', 'ws');
  assert.deepEqual({ opened: r.opened, got: r.got }, { opened: true, got: true }, JSON.stringify(r));
});

test('ws: an origin not in --allowed-origins is refused', { timeout: 30000 }, async (t) => {
  const r = await tryTransport(t, 'other', 'ws', 3000);
  assert.equal(r.opened, false, JSON.stringify(r));
});

for (const transport of ['sse', 'eventsource']) {
  test(`${transport}: an allowed origin connects and receives (needs CORS headers on /sse)`, { timeout: 30000 }, async (t) => {
    const r = await tryTransport(t, 'app', transport);
    assert.deepEqual({ opened: r.opened, got: r.got }, { opened: true, got: true }, JSON.stringify(r));
  });

  test(`${transport}: an origin not in --allowed-origins gets nothing`, { timeout: 30000 }, async (t) => {
    const r = await tryTransport(t, 'other', transport, 3000);
    assert.equal(r.got, false, JSON.stringify(r));
  });
}
