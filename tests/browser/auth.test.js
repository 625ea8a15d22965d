'use strict';
// Tokens from the page: a gateway with --jwt-secret and no anonymous access.
// pushgate.js sends the token as ?token= on WebSocket and EventSource and as
// an Authorization header on fetch-streamed SSE; all three must reach the
// user's own channel. A bad token stops the fetch-SSE client with HTTP 401.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('./harness');

const SECRET = 'browser-test-secret';
const log = h.logPath;
let redis;
let gw;
let gwPort;
let browser;

const jwt = (claims, secret = SECRET) => h.jwtHS256(secret, claims);

test.before(async () => {
  const bin = h.preflight();
  redis = await h.startRedis(log('redis-auth'));
  gwPort = await h.freePort();
  gw = await h.startGateway(bin, {
    port: gwPort, redisPort: redis.port, logFile: log('pushgate-auth'),
    extraArgs: ['--jwt-secret', SECRET],
  });
  browser = await h.launchBrowser();
});

test.after(async () => {
  await h.stopAll({ browser, gw, redis });
});

async function openPage(t) {
  const page = await browser.ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.sseHeaders = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/sse') page.sseHeaders.push({ url: r.url(), headers: r.headers() });
  });
  t.after(() => page.close().catch(() => {}));
  await page.goto(`http://127.0.0.1:${gwPort}/`);
  page.errors = errors;
  return page;
}

for (const transport of ['ws', 'sse', 'eventsource']) {
  test(`${transport}: a token from the page reaches user:<sub>`, { timeout: 60000 }, async (t) => {
    const sub = `u-${transport}`;
    const token = jwt({ sub, exp: Math.floor(Date.now() / 1000) + 600 });
    const page = await openPage(t);
    await page.selectOption('#transport', transport);
    await page.fill('#token', token);
    await page.fill('#channels', '');
    await page.click('#connect');
    await page.waitForSelector('#status[data-state="open"]', { timeout: 10000 });
    await h.until(`Redis subscriber on pushgate:user:${sub}`, async () => {
      const out = await h.redisCli(redis.port, 'PUBSUB', 'NUMSUB', `pushgate:user:${sub}`);
      return Number(out.split('\n')[1]) >= 1;
    });
    const id = await h.fcallPublish(redis.port, `user:${sub}`, { data: { hello: sub } });
    await page.waitForSelector(`#log tr.msg[data-id="${id}"]`, { timeout: 10000 });
    assert.equal(await page.textContent(`#log tr.msg[data-id="${id}"] td.channel`), `user:${sub}`);
    if (transport === 'sse') {
      const req = page.sseHeaders[page.sseHeaders.length - 1];
      assert.equal(req.headers.authorization, `Bearer ${token}`, 'fetch-SSE sends the token as a header');
      assert.equal(new URL(req.url).searchParams.get('token'), null, 'and not in the URL');
    }
    assert.deepEqual(page.errors, []);
  });
}

test('sse: a token with a wrong signature stops with HTTP 401, no retry loop', { timeout: 60000 }, async (t) => {
  const page = await openPage(t);
  await page.selectOption('#transport', 'sse');
  await page.fill('#token', jwt({ sub: 'x' }, 'not-the-secret'));
  await page.fill('#channels', '');
  await page.click('#connect');
  await page.waitForSelector('#status[data-state="closed"]', { timeout: 10000 });
  assert.match(await page.textContent("#log"), /HTTP 401: token missing, invalid or expired\), not retrying/);
  assert.equal(page.sseHeaders.length, 1, 'gave up after the first 401');
  await page.screenshot({ path: path.join(h.OUT, 'auth-sse-401.png'), fullPage: true });
  assert.deepEqual(page.errors, []);
});
