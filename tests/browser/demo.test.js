'use strict';
// End-to-end: the demo page served by a real pushgate, in headless Chromium,
// against a real redis-server. Needs PUSHGATE_BIN, /usr/bin/chromium and
// tests/browser/node_modules (scripts/deps.sh installs them). A missing piece
// fails the run; nothing here is skipped.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./harness');

const RUN = `${Date.now()}`;
const log = h.logPath;

let bin;
let redis;
let gw;
let gwPort;
let browser;
const pages = [];

test.before(async () => {
  bin = h.preflight();
  redis = await h.startRedis(log('redis'));
  gwPort = await h.freePort();
  gw = await h.startGateway(bin, { port: gwPort, redisPort: redis.port, logFile: log('pushgate') });
  browser = await h.launchBrowser();
});

test.after(async () => {
  for (const p of pages) await p.close().catch(() => {});
  await h.stopAll({ browser, gw, redis });
});

const base = () => `http://127.0.0.1:${gwPort}`;

// A fresh page on the demo, failing the test on any script error in it.
async function openDemo(t) {
  const page = await browser.ctx.newPage();
  pages.push(page);
  const errors = [];
  // Uncaught script errors fail the test. The console is kept for the
  // record only: Chromium logs every refused reconnect attempt there.
  page.on('pageerror', (e) => errors.push(e.message));
  page.console = [];
  page.on('console', (m) => page.console.push(`${m.type()}: ${m.text()}`));
  page.errors = errors;
  page.wsUrls = [];
  page.sseUrls = [];
  page.on('websocket', (ws) => page.wsUrls.push(ws.url()));
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/sse') page.sseUrls.push(r.url()); });
  const res = await page.goto(base() + '/');
  assert.equal(res.status(), 200, 'GET / answers 200');
  await page.waitForFunction(() => typeof window.PushGate === 'function', null, { timeout: 5000 });
  t.after(() => page.close().catch(() => {}));
  return page;
}

async function connect(page, { transport, channels = 'news', events = '' }) {
  await page.selectOption('#transport', transport);
  await page.fill('#channels', channels);
  if (transport === 'eventsource') await page.fill('#es-events', events);
  await page.click('#connect');
  await page.waitForSelector('#status[data-state="open"]', { timeout: 10000 });
}

// Rows of the live log, top (newest) first.
function rows(page) {
  return page.$$eval('#log tr.msg', (trs) => trs.map((tr) => ({
    channel: tr.querySelector('td.channel').textContent,
    event: tr.querySelector('td.event').textContent,
    id: tr.querySelector('td.id').textContent,
    data: tr.querySelector('td.data').textContent,
  })));
}

async function waitRow(page, pred, what, ms = 10000) {
  return h.until(what, async () => (await rows(page)).find(pred), ms);
}

// The gateway holds a Redis subscription for a topic only while a connection
// wants it: wait until Redis itself reports one before publishing live.
async function waitSubscribed(channel) {
  await h.until(`Redis subscriber on pushgate:${channel}`, async () => {
    const out = await h.redisCli(redis.port, 'PUBSUB', 'NUMSUB', `pushgate:${channel}`);
    return Number(out.split('\n')[1]) >= 1;
  });
}

async function shot(page, name) {
  fs.writeFileSync(path.join(h.OUT, `${name}.console.txt`), page.console.join('\n') + '\n');
  await page.screenshot({ path: path.join(h.OUT, `${name}.png`), fullPage: true });
}

test('GET /pushgate.js serves gateway/www/pushgate.js as JavaScript', async () => {
  const r = await h.httpGet(base() + '/pushgate.js');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'] || '', /javascript/);
  const src = fs.readFileSync(path.join(__dirname, '..', '..', 'gateway', 'www', 'pushgate.js'), 'utf8');
  assert.equal(r.body, src, 'the embedded pushgate.js differs from gateway/www/pushgate.js (stale build?)');
  const page = await h.httpGet(base() + '/');
  assert.match(page.headers['content-type'] || '', /text\/html/);
});

// (a) and (b): a message published with FCALL reaches the page's log.
for (const transport of ['ws', 'sse', 'eventsource']) {
  test(`(${transport === 'ws' ? 'a' : 'b'}) ${transport}: FCALL on broadcast shows in #log with channel, event, id`, { timeout: 60000 }, async (t) => {
    const page = await openDemo(t);
    await connect(page, { transport, events: 'e' });
    const n = `${transport}-${RUN}`;
    // Non-ASCII, quotes, backslashes and a newline must survive every hop.
    const text = 'h\u00e9llo \u2713 \ud83d\ude00 "q" \\ </script>\nline2';
    const id = await h.fcallPublish(redis.port, 'broadcast', { event: 'e', data: { n: 1, run: n, text } });
    const row = await waitRow(page, (r) => r.id === id, `row with id ${id}`);
    assert.equal(row.channel, 'broadcast');
    assert.equal(row.event, 'e');
    assert.deepEqual(JSON.parse(row.data), { n: 1, run: n, text });
    assert.match(await page.textContent('#lastid'), /^[0-9]+$/);
    if (transport === 'ws') assert.equal(page.wsUrls.length, 1);
    else assert.ok(page.sseUrls.length >= 1, 'an /sse request was made');
    await shot(page, `receive-${transport}`);
    assert.deepEqual(page.errors, []);
  });
}

// (c) the page's publish form goes through POST /api/publish and comes back.
for (const transport of ['ws', 'sse']) {
  test(`(c) ${transport}: publishing from the page's form reaches the page`, { timeout: 60000 }, async (t) => {
    const page = await openDemo(t);
    await connect(page, { transport, channels: 'news' });
    await waitSubscribed('news');
    const marker = `form-${transport}-${RUN}`;
    await page.fill('#apikey', 'k');
    await page.fill('#pub-channel', 'news');
    await page.fill('#pub-event', 'greeting');
    await page.fill('#pub-data', JSON.stringify({ text: 'hello', marker }));
    await page.click('#publish');
    await page.waitForSelector('#pub-result.ok', { timeout: 10000 });
    const result = await page.textContent('#pub-result');
    assert.match(result, /^200 /, result);
    const { id } = JSON.parse(result.slice(result.indexOf('\n') + 1));
    assert.match(id, /^[0-9]+$/);
    const row = await waitRow(page, (r) => r.id === id, `row with id ${id}`);
    assert.equal(row.channel, 'news');
    assert.equal(row.event, 'greeting');
    assert.deepEqual(JSON.parse(row.data), { text: 'hello', marker });

    // A wrong key is shown as an error, not swallowed.
    await page.fill('#apikey', 'wrong');
    await page.click('#publish');
    await page.waitForSelector('#pub-result.err', { timeout: 10000 });
    assert.match(await page.textContent('#pub-result'), /^401 /);
    await shot(page, `publish-form-${transport}`);
    assert.deepEqual(page.errors, []);
  });
}

// (d) resume: message 1 live, the gateway restarts on the same port, 2..4 are
// published with FCALL while it is down or starting; pushgate.js reconnects
// with since=<id of 1> and the page shows 1..4 exactly once, in order.
for (const transport of ['ws', 'sse', 'eventsource']) {
  test(`(d) ${transport}: resume across a gateway restart shows 1..4 exactly once in order`, { timeout: 90000 }, async (t) => {
    const page = await openDemo(t);
    const ev = `resume-${transport}`;
    await connect(page, { transport, channels: 'news', events: ev });
    await waitSubscribed('news');
    const mine = (r) => r.event === ev && JSON.parse(r.data).run === RUN;
    const publish = (n) => h.fcallPublish(redis.port, 'news', { event: ev, data: { n, run: RUN } });

    const id1 = await publish(1);
    await waitRow(page, (r) => r.id === id1, 'message 1');

    const st = await gw.stop();
    assert.deepEqual({ code: st.code, signal: st.signal, killed: !!st.killedAfterTimeout },
      { code: 0, signal: null, killed: false }, 'pushgate exits 0 on SIGTERM');
    await page.waitForSelector('#status:not([data-state="open"])', { timeout: 10000 });

    const ids = [id1, await publish(2), await publish(3)];
    const starting = h.startGateway(bin, { port: gwPort, redisPort: redis.port, logFile: log('pushgate') });
    ids.push(await publish(4));
    gw = await starting;

    await h.until('messages 1..4 on the page', async () => (await rows(page)).filter(mine).length >= 4, 45000, 100);
    // A live message after the replay: any duplicate of 1..4 would have come
    // before it, so once it is shown the log is final.
    ids.push(await publish(5));
    await waitRow(page, (r) => r.id === ids[4], 'message 5 (live after resume)', 15000);

    const got = (await rows(page)).filter(mine).reverse(); // oldest first
    assert.deepEqual(got.map((r) => JSON.parse(r.data).n), [1, 2, 3, 4, 5], 'each message exactly once, in order');
    assert.deepEqual(got.map((r) => r.id), ids);
    await shot(page, `resume-${transport}`);

    if (transport === 'ws') {
      assert.ok(page.wsUrls.length >= 2, 'reconnected');
      const u = new URL(page.wsUrls[page.wsUrls.length - 1]);
      assert.equal(u.searchParams.get('since'), id1, 'the reconnect asked for since=<id of message 1>');
    } else if (transport === 'sse') {
      const u = new URL(page.sseUrls[page.sseUrls.length - 1]);
      assert.equal(u.searchParams.get('since'), id1, 'the reconnect asked for since=<id of message 1>');
    }
    assert.equal(await page.getAttribute('#status', 'data-state'), 'open');
    assert.deepEqual(page.errors, []);
  });
}

// Runtime subscribe: a topic added from the page starts to arrive, and a
// topic the gateway refuses is reported in the log while the rest goes on.
for (const transport of ['ws', 'sse']) {
  test(`${transport}: runtime subscribe from the page`, { timeout: 60000 }, async (t) => {
    const page = await openDemo(t);
    await connect(page, { transport, channels: '' });
    await page.fill('#topic', 'news');
    await page.click('#subscribe');
    await page.waitForSelector('#log tr.sys.sub', { timeout: 10000 });
    await page.waitForSelector('#status[data-state="open"]', { timeout: 10000 });
    await waitSubscribed('news');
    const id = await h.fcallPublish(redis.port, 'news', { event: 'rt', data: { run: RUN, transport } });
    const row = await waitRow(page, (r) => r.id === id, `row with id ${id}`);
    assert.equal(row.channel, 'news');
    await page.fill('#topic', 'secret');
    await page.click('#subscribe');
    await page.waitForSelector('#log tr.sys.error', { timeout: 10000 });
    assert.match(await page.textContent('#log tr.sys.error'), /secret/);
    await page.waitForSelector('#status[data-state="open"]', { timeout: 10000 });
    const id2 = await h.fcallPublish(redis.port, 'news', { event: 'rt2', data: { run: RUN, transport } });
    await waitRow(page, (r) => r.id === id2, `row with id ${id2} after the refused subscribe`);

    // Unsubscribe: news stops, broadcast goes on. The broadcast marker is
    // published after the news message, so once it shows, news would have too.
    await page.fill('#topic', 'news');
    await page.click('#unsubscribe');
    await page.waitForSelector('#log tr.sys.sub >> text=unsubscribed from news', { timeout: 10000 });
    await page.waitForSelector('#status[data-state="open"]', { timeout: 10000 });
    await h.until('the gateway left pushgate:news', async () => {
      const out = await h.redisCli(redis.port, 'PUBSUB', 'NUMSUB', 'pushgate:news');
      return Number(out.split('\n')[1]) === 0;
    });
    const gone = await h.fcallPublish(redis.port, 'news', { event: 'rt3', data: { run: RUN, transport } });
    const marker = await h.fcallPublish(redis.port, 'broadcast', { event: 'rt4', data: { run: RUN, transport } });
    await waitRow(page, (r) => r.id === marker, 'broadcast marker after unsubscribe');
    assert.equal((await rows(page)).filter((r) => r.id === gone).length, 0, 'no news after unsubscribe');
    await shot(page, `runtime-subscribe-${transport}`);
    assert.deepEqual(page.errors, []);
  });
}
