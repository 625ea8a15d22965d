'use strict';
// The incomplete-recovery path in the browser: with --history-size 2 a client
// that was away for four messages cannot get them all back. The page must say
// so ('recovery' event, shown as a notice) and then show what history still
// has, in order, once each. Its own redis-server and pushgate, because the
// history size is baked into the Redis function the gateway loads.
// Also: the WebSocket keepalive ping gets its pong from the real gateway.
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

test.before(async () => {
  bin = h.preflight();
  redis = await h.startRedis(log('redis-recovery'));
  gwPort = await h.freePort();
  gw = await startGw();
  browser = await h.launchBrowser();
});

test.after(async () => {
  await h.stopAll({ browser, gw, redis });
});

function startGw() {
  return h.startGateway(bin, {
    port: gwPort, redisPort: redis.port, logFile: log('pushgate-recovery'),
    extraArgs: ['--history-size', '2'],
  });
}

async function openPage(t) {
  const page = await browser.ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.console = [];
  page.on('console', (m) => page.console.push(`${m.type()}: ${m.text()}`));
  t.after(() => page.close().catch(() => {}));
  await page.goto(`http://127.0.0.1:${gwPort}/`);
  page.errors = errors;
  return page;
}

function rows(page) {
  return page.$$eval('#log tr', (trs) => trs.map((tr) => (tr.classList.contains('msg')
    ? { kind: 'msg', event: tr.dataset.event, id: tr.dataset.id, data: tr.querySelector('td.data').textContent }
    : { kind: tr.className, text: tr.textContent })));
}

async function waitSubscribed(channel) {
  await h.until(`Redis subscriber on pushgate:${channel}`, async () => {
    const out = await h.redisCli(redis.port, 'PUBSUB', 'NUMSUB', `pushgate:${channel}`);
    return Number(out.split('\n')[1]) >= 1;
  });
}

for (const transport of ['ws', 'sse', 'eventsource']) {
  test(`${transport}: history trimmed while away → recovery notice, then what is left, in order`, { timeout: 90000 }, async (t) => {
    const page = await openPage(t);
    const ev = `trim-${transport}`;
    await page.selectOption('#transport', transport);
    await page.fill('#channels', 'news');
    if (transport === 'eventsource') await page.fill('#es-events', ev);
    await page.click('#connect');
    await page.waitForSelector('#status[data-state="open"]', { timeout: 10000 });
    await waitSubscribed('news');
    const publish = (n) => h.fcallPublish(redis.port, 'news', { event: ev, data: { n, run: RUN } });
    const mine = (r) => r.kind === 'msg' && r.event === ev;

    const id1 = await publish(1);
    await h.until('message 1', async () => (await rows(page)).some((r) => r.id === id1));
    const st = await gw.stop();
    assert.equal(st.code, 0, 'pushgate exits 0 on SIGTERM');
    await page.waitForSelector('#status:not([data-state="open"])', { timeout: 10000 });
    const ids = [id1];
    for (let n = 2; n <= 5; n++) ids.push(await publish(n)); // history keeps 4 and 5
    gw = await startGw();

    await h.until('recovery notice and messages 4, 5', async () => {
      const r = await rows(page);
      return r.some((x) => x.kind.includes('recovery')) && r.filter(mine).length >= 3;
    }, 45000, 100);
    ids.push(await publish(6));
    await h.until('message 6 (live)', async () => (await rows(page)).some((r) => r.id === ids[5]), 15000);

    const all = (await rows(page)).reverse(); // oldest first
    const got = all.filter(mine);
    assert.deepEqual(got.map((r) => JSON.parse(r.data).n), [1, 4, 5, 6], 'what history still had, once each, in order');
    const notices = all.filter((r) => r.kind.includes('recovery'));
    assert.equal(notices.length, 1, 'told once');
    const noticeAt = all.indexOf(notices[0]);
    assert.ok(noticeAt > all.indexOf(got[0]) && noticeAt < all.indexOf(got[1]),
      'the notice comes after message 1 and before the recovered messages');
    await page.screenshot({ path: path.join(h.OUT, `recovery-${transport}.png`), fullPage: true });
    fs.writeFileSync(path.join(h.OUT, `recovery-${transport}.console.txt`), page.console.join('\n') + '\n');
    assert.deepEqual(page.errors, []);
  });
}

test('ws: the keepalive ping is answered with a pong', { timeout: 30000 }, async (t) => {
  const page = await openPage(t);
  const got = await page.evaluate(() => new Promise((resolve, reject) => {
    const pg = new window.PushGate({ url: location.origin, transport: 'ws', pingInterval: 300 });
    const timer = setTimeout(() => { pg.close(); reject(new Error('no pong within 10 s')); }, 10000);
    pg.on('pong', (f) => { clearTimeout(timer); pg.close(); resolve(f); });
  }));
  assert.deepEqual(got, { type: 'pong' });
  assert.deepEqual(page.errors, []);
});
