'use strict';
// SPEC §7 in the browser: pushgate.js keeps a connection alive across token
// expiry with getToken, and obeys the gateway's close codes. A real gateway
// with --jwt-secret and a 2 s --token-refresh-window; tokens live ~4 s, are
// minted here in Node (HMAC) and handed to the page through exposeFunction,
// so the page's getToken returns a Promise as a real app's fetch would.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('./harness');

const SECRET = 'lifetime-test-secret';
const WINDOW = 2;        // --token-refresh-window, seconds
const LIFE = 4;          // seconds from mint to exp (3..4 s left: exp is whole seconds)
const log = h.logPath;
let redis;
let gw;
let gwPort;
let browser;

const jwt = (claims) => h.jwtHS256(SECRET, claims);
const nowS = () => Math.floor(Date.now() / 1000);
const expOf = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url')).exp;

test.before(async () => {
  const bin = h.preflight();
  redis = await h.startRedis(log('redis-lifetime'));
  gwPort = await h.freePort();
  gw = await h.startGateway(bin, {
    port: gwPort, redisPort: redis.port, logFile: log('pushgate-lifetime'),
    extraArgs: ['--jwt-secret', SECRET, '--token-refresh-window', String(WINDOW)],
  });
  browser = await h.launchBrowser();
});

test.after(async () => {
  await h.stopAll({ browser, gw, redis });
});

// pushgate_connections{transport="ws"|"sse"} from the gateway's /metrics.
async function connections(transport) {
  const r = await h.httpGet(`http://127.0.0.1:${gwPort}/metrics`);
  const m = new RegExp(`^pushgate_connections\\{transport="${transport}"\\} (\\d+)$`, 'm').exec(r.body);
  if (!m) throw new Error(`no pushgate_connections{transport="${transport}"} in /metrics`);
  return Number(m[1]);
}

async function subscribedTo(channel) {
  const out = await h.redisCli(redis.port, 'PUBSUB', 'NUMSUB', `pushgate:${channel}`);
  return Number(out.split('\n')[1]) >= 1;
}

// "Nothing happens" can only be shown over a bounded time: `check` must hold
// on every poll for `ms`.
async function holds(what, check, ms = 2500, every = 100) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await check();
    if (!v) throw new Error(`no longer true: ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// The demo page (it loads /pushgate.js, same origin), recording what reaches
// the gateway: WebSocket URLs and /sse requests with their headers.
async function openPage(t) {
  const page = await browser.ctx.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.console = [];
  page.on('console', (m) => page.console.push(`${m.type()}: ${m.text()}`));
  page.wsUrls = [];
  page.sse = [];
  page.on('websocket', (ws) => page.wsUrls.push(ws.url()));
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/sse') page.sse.push({ url: r.url(), headers: r.headers() });
  });
  t.after(() => page.close().catch(() => {}));
  const res = await page.goto(`http://127.0.0.1:${gwPort}/`);
  assert.equal(res.status(), 200);
  await page.waitForFunction(() => typeof window.PushGate === 'function', null, { timeout: 5000 });
  return page;
}

// The token an /sse request carried: Authorization header (fetch-SSE,
// same origin) or ?token= (EventSource).
function sseToken(req) {
  const a = req.headers.authorization;
  return a ? a.replace(/^Bearer /, '') : new URL(req.url).searchParams.get('token');
}

// A PushGate built in the page whose getToken asks Node for a fresh token.
// Returns the list of tokens minted for it, in order.
async function startMintingClient(page, transport, sub) {
  const minted = [];
  await page.exposeFunction('mintToken', () => {
    // jti: two tokens minted within one second still differ
    const token = jwt({ sub, iat: nowS(), exp: nowS() + LIFE, jti: `${sub}-${minted.length}` });
    minted.push(token);
    return token;
  });
  await page.evaluate(({ transport }) => {
    const rec = window.rec = { msgs: [], events: [] };
    const pg = window.pg = new window.PushGate({
      url: location.origin, transport, getToken: () => window.mintToken(),
      events: ['tick'],   // EventSource hands named events only to their listeners
    });
    pg.on('message', (m) => rec.msgs.push(m));
    for (const n of ['open', 'close', 'error', 'expiring', 'refreshed', 'reconnecting']) {
      pg.on(n, (e) => {
        const o = {};
        for (const k of ['code', 'reason', 'status', 'willReconnect', 'exp', 'transport']) {
          if (e && e[k] !== undefined) o[k] = e[k];
        }
        rec.events.push([n, o]);
      });
    }
  }, { transport });
  await page.waitForFunction(() => window.pg.state === 'open', null, { timeout: 10000 });
  return minted;
}

const events = (page, name) =>
  page.evaluate((n) => window.rec.events.filter((e) => e[0] === n).map((e) => e[1]), name);

// Publishes to user:<sub> with history every 150 ms until `untilMs` (epoch).
async function publishUntil(sub, untilMs) {
  const ids = [];
  let n = 0;
  while (Date.now() < untilMs) {
    ids.push(await h.fcallPublish(redis.port, `user:${sub}`, { event: 'tick', data: { n: n++ } }));
    await new Promise((r) => setTimeout(r, 150));
  }
  return ids;
}

// (a) and (c): the connection outlives its first token. Messages published
// all along, across the refresh and past the first exp, arrive exactly once
// and in order.
for (const transport of ['ws', 'sse', 'eventsource']) {
  test(`${transport}: getToken refreshes before exp, nothing lost or doubled past the first exp`, { timeout: 60000 }, async (t) => {
    const sub = `life-${transport}`;
    const page = await openPage(t);
    const minted = await startMintingClient(page, transport, sub);
    await h.until(`the gateway subscribed to user:${sub}`, () => subscribedTo(`user:${sub}`));
    const exp1 = expOf(minted[0]);

    // publish until 1.5 s past the first token's exp
    const ids = await publishUntil(sub, exp1 * 1000 + 1500);
    assert.ok(nowS() > exp1, 'published past the first exp');
    let got;
    try {
      got = await h.until(`all ${ids.length} messages in the page`, async () => {
        const m = await page.evaluate(() => window.rec.msgs.map((x) => x.id));
        return m.length >= ids.length ? m : null;
      }, 30000); // a bound, not a wait: under ASan the SSE re-open and its replay took over 10 s once
    } catch (e) {
      // Say which ids are missing and what the client went through: this
      // case has failed now and then under ASan in CI, never when run alone
      const m = await page.evaluate(() => window.rec.msgs.map((x) => x.id));
      const missing = ids.filter((id) => !m.includes(id));
      const evs = await page.evaluate(() => window.rec.events);
      throw new Error(`${e.message}: missing ${JSON.stringify(missing)} of ${JSON.stringify(ids)}; ` +
                      `got ${JSON.stringify(m)}; client events ${JSON.stringify(evs)}`);
    }
    assert.deepEqual(got, ids, 'every message once, in order');
    assert.deepEqual(await events(page, 'close'), [], 'never closed');

    assert.ok(minted.length >= 2, `getToken was asked again (minted ${minted.length})`);
    const refreshed = await events(page, 'refreshed');
    assert.ok(refreshed.length >= 1, 'a refreshed event');
    assert.ok(refreshed[0].exp > exp1, `refreshed exp ${refreshed[0].exp} is past the first ${exp1}`);
    assert.ok((await events(page, 'expiring')).some((e) => e.exp === exp1), 'the gateway warned about exp1');
    assert.equal(await page.evaluate(() => window.pg.state), 'open');

    const gauge = transport === 'ws' ? 'ws' : 'sse';
    if (transport === 'ws') {
      assert.equal(page.wsUrls.length, 1, 'one WebSocket all along');
      assert.equal(new URL(page.wsUrls[0]).searchParams.get('token'), minted[0]);
    } else {
      // (c) the stream was re-opened with a fresh token, resuming after the
      // last id it had, so history filled the seam.
      assert.ok(page.sse.length >= 2, `re-opened (${page.sse.length} /sse requests)`);
      const tokens = page.sse.map(sseToken);
      assert.equal(tokens[0], minted[0]);
      assert.equal(new Set(tokens).size, tokens.length, 'each stream with a token of its own');
      for (const tk of tokens) assert.ok(minted.includes(tk), 'every token came from getToken');
      assert.ok(page.sse.slice(1).some((req) => /^[0-9]+$/.test(new URL(req.url).searchParams.get('since') || '')),
        'a re-open resumed with since=<last id>');
    }
    await h.until(`exactly one ${gauge} connection on the gateway`, async () => (await connections(gauge)) === 1, 5000);
    await page.screenshot({ path: path.join(h.OUT, `lifetime-${transport}.png`), fullPage: true });
    assert.deepEqual(page.errors, []);
    await page.evaluate(() => window.pg.close());
  });
}

// The demo page, its token field read by getToken: a connection closed with
// `reconnect: false` reports 4003 and never comes back.
async function demoConnect(page, transport, token) {
  await page.selectOption('#transport', transport);
  await page.fill('#token', token);
  await page.fill('#channels', '');
  await page.click('#connect');
  await page.waitForSelector('#status[data-state="open"]', { timeout: 10000 });
}

const attempts = (page, transport) => (transport === 'ws' ? page.wsUrls.length : page.sse.length);

for (const transport of ['ws', 'sse', 'eventsource']) {
  test(`${transport}: pushgate_disconnect reconnect:false -> 4003 shown, no reconnect`, { timeout: 60000 }, async (t) => {
    const sub = `gone-${transport}`;
    const gauge = transport === 'ws' ? 'ws' : 'sse';
    const page = await openPage(t);
    await demoConnect(page, transport, jwt({ sub, iat: nowS() - 1, exp: nowS() + 600 }));
    await h.until(`one ${gauge} connection on the gateway`, async () => (await connections(gauge)) === 1);
    assert.equal(attempts(page, transport), 1);

    const nodes = await h.redisCli(redis.port, 'FCALL', 'pushgate_disconnect', '0', sub,
      JSON.stringify({ reconnect: false, reason: 'account closed' }));
    assert.equal(nodes, '1', 'one node received the order');

    await page.waitForSelector('#lastclose[data-code="4003"]', { timeout: 10000 });
    assert.equal(await page.getAttribute('#lastclose', 'data-reconnect'), 'false');
    assert.equal(await page.getAttribute('#lastclose', 'data-reason'), 'account closed');
    assert.match(await page.textContent('#lastclose'), /4003 account closed.*will not reconnect/);
    assert.match(await page.textContent('#log'), /connection closed \(4003 account closed\), not retrying/);
    await page.waitForSelector('#status[data-state="closed"]', { timeout: 5000 });
    await h.until(`no ${gauge} connection left on the gateway`, async () => (await connections(gauge)) === 0, 5000);

    // and it stays that way: no new attempt from the page (EventSource would
    // retry by itself if pushgate.js had not closed it), none at the gateway
    await holds('no reconnect', async () =>
      attempts(page, transport) === 1 && (await connections(gauge)) === 0 &&
      (await page.getAttribute('#status', 'data-state')) === 'closed');
    await page.screenshot({ path: path.join(h.OUT, `lifetime-4003-${transport}.png`), fullPage: true });
    assert.deepEqual(page.errors, []);
  });
}

// 4000 (the default): the page says why and comes back, with the token the
// field holds now (getToken is asked again on reconnect).
test('ws: pushgate_disconnect with the default reconnect -> 4000 shown, back with a fresh token', { timeout: 60000 }, async (t) => {
  const sub = 'again-ws';
  const page = await openPage(t);
  const first = jwt({ sub, iat: nowS() - 1, exp: nowS() + 600 });
  await demoConnect(page, 'ws', first);
  await h.until('one ws connection on the gateway', async () => (await connections('ws')) === 1);
  const second = jwt({ sub, iat: nowS(), exp: nowS() + 900 });
  await page.fill('#token', second);
  const nodes = await h.redisCli(redis.port, 'FCALL', 'pushgate_disconnect', '0', sub,
    JSON.stringify({ reason: 'rebalancing' }));
  assert.equal(nodes, '1');
  await page.waitForSelector('#lastclose[data-code="4000"]', { timeout: 10000 });
  assert.equal(await page.getAttribute('#lastclose', 'data-reconnect'), 'true');
  assert.match(await page.textContent('#log'), /connection closed \(4000 rebalancing\), will reconnect/);
  await h.until('a second WebSocket', async () => page.wsUrls.length === 2, 10000);
  assert.equal(new URL(page.wsUrls[1]).searchParams.get('token'), second, 'the reconnect used the fresh token');
  await page.waitForSelector('#status[data-state="open"]', { timeout: 10000 });
  await h.until(`the gateway subscribed to user:${sub}`, () => subscribedTo(`user:${sub}`));
  const id = await h.fcallPublish(redis.port, `user:${sub}`, { data: { back: true } });
  await page.waitForSelector(`#log tr.msg[data-id="${id}"]`, { timeout: 10000 });
  assert.deepEqual(page.errors, []);
});
