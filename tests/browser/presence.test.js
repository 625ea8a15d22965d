'use strict';
// pushgate.js send() and the demo's "Who is here" list (SPEC 8, 9), in
// headless Chromium against a real pushgate and a real redis-server: a send
// resolves only with the id of an entry that is in <prefix>events, a refused
// one rejects with the gateway's code, and the list follows join/leave.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const log = h.logPath;
let bin;
let redis;
let gw;
let gwPort;
let browser;

test.before(async () => {
  bin = h.preflight();
  redis = await h.startRedis(log('presence-redis'));
  gwPort = await h.freePort();
  gw = await h.startGateway(bin, {
    port: gwPort, redisPort: redis.port, logFile: log('presence-pushgate'),
    extraArgs: ['--public-topics', 'news,room.*', '--presence-topics', 'room.*',
                '--events', '--client-send-rate', '3'],
  });
  browser = await h.launchBrowser();
});

test.after(async () => {
  await h.stopAll({ browser, gw, redis });
});

async function openDemo(t) {
  const page = await browser.ctx.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  t.after(() => page.close().catch(() => {}));
  const res = await page.goto(`http://127.0.0.1:${gwPort}/`);
  assert.equal(res.status(), 200);
  await page.waitForFunction(() => typeof window.PushGate === 'function', null, { timeout: 5000 });
  return page;
}

async function connect(page, transport, channels) {
  await page.selectOption('#transport', transport);
  await page.fill('#channels', channels);
  await page.click('#connect');
  await page.waitForSelector('#status[data-state="open"]', { timeout: 10000 });
}

// The ids of the entries of type "message" in the events stream (redis-cli
// prints an entry as its id, then each field and value, one a line).
async function storedMessages() {
  const lines = (await h.redisCli(redis.port, 'XRANGE', 'pushgate:events', '-', '+')).split('\n');
  const ids = [];
  for (let i = 0; i + 2 < lines.length; i++) {
    if (/^\d+-\d+$/.test(lines[i]) && lines[i + 1] === 'type' && lines[i + 2] === 'message') ids.push(lines[i]);
  }
  return ids;
}

test('send() resolves with the stream entry id; past the rate it rejects and stores nothing', { timeout: 60000 }, async (t) => {
  const page = await openDemo(t);
  await connect(page, 'ws', 'news');
  const first = await page.evaluate(() => window.pushgateDemo.client.send({ hello: 'w\u00f6rld' }));
  assert.match(first.id, /^\d+-\d+$/);
  assert.deepEqual(await storedMessages(), [first.id]);
  const data = await h.redisCli(redis.port, 'XRANGE', 'pushgate:events', first.id, first.id);
  assert.match(data, /\{"hello":"w\u00f6rld"\}/);

  // a burst of 8 against --client-send-rate 3: some are refused
  const results = await page.evaluate(async () => {
    const c = window.pushgateDemo.client;
    const all = [];
    for (let i = 0; i < 8; i++) all.push(c.send(i).then((r) => ({ ok: r.id }), (e) => ({ code: e.code, ref: e.ref })));
    return Promise.all(all);
  });
  const ok = results.filter((r) => r.ok).map((r) => r.ok);
  const refused = results.filter((r) => r.code);
  assert.ok(refused.length >= 1, JSON.stringify(results));
  assert.ok(refused.every((r) => r.code === 'rate_limited' && /^pg\d+$/.test(r.ref)), JSON.stringify(refused));
  assert.deepEqual((await storedMessages()).slice(1).sort(), ok.sort(), 'sent answers == stored entries');
  assert.deepEqual(page.errors, []);
});

test('send() on SSE rejects at once with not_open', { timeout: 30000 }, async (t) => {
  const page = await openDemo(t);
  await connect(page, 'sse', 'news');
  const code = await page.evaluate(() => window.pushgateDemo.client.send(1).then(() => 'resolved', (e) => e.code));
  assert.equal(code, 'not_open');
});

async function whoList(page) {
  return page.$$eval('#who li[data-channel]', (lis) => lis.map((li) => `${li.dataset.channel} ${li.dataset.user || '-'}`));
}

test('the demo lists who is in the topic as join and leave arrive', { timeout: 60000 }, async (t) => {
  const a = await openDemo(t);
  await connect(a, 'ws', 'room.1');
  await h.until('a sees itself', async () => (await whoList(a)).length === 1);
  const b = await openDemo(t);
  await connect(b, 'sse', 'room.1');
  await h.until('a sees b join', async () => (await whoList(a)).length === 2);
  assert.deepEqual(await whoList(a), ['room.1 -', 'room.1 -']);
  await b.click('#disconnect');
  await h.until('a sees b leave', async () => (await whoList(a)).length === 1);
  assert.deepEqual(a.errors, []);
});
