'use strict';
// Chromium's own EventSource against a node on a real three-master Redis
// Cluster (README "Recovery without a total order"): the SSE `id:` of a
// cluster node is the stream's position list, and the browser sends it back
// by itself as Last-Event-ID when it reconnects, so a channel whose ids run
// below another shard's is resumed at its own position. No pushgate.js
// here: a plain EventSource, which is what the list is for. Needs
// PUSHGATE_BIN, redis-server / redis-cli 7, /usr/bin/chromium and
// node_modules (scripts/deps.sh); a missing piece fails, nothing is skipped.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const h = require('./harness');

const SECRET = 'cluster-test-secret';
const KEY = 'k';
const log = (name) => h.logPath(`cluster-${name}`);

let bin;
let dir;
const redis = [];
let gw;
let gwPort;
let browser;

const jwt = (claims) => h.jwtHS256(SECRET, claims);

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 60000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${cmd} ${args.join(' ')}: ${err.message} ${stderr}`));
      resolve(stdout.trim());
    });
  });
}

// redis-cli in cluster mode (-c): follows MOVED to the key's master.
const clusterCli = (...args) => run('redis-cli', ['-c', '-h', '127.0.0.1', '-p', String(redis[0].port), ...args]);

// One cluster node on a free port, its bus on another (port + 10000 may be
// taken); retried when a port was taken between freePort() and the bind.
async function startClusterNode(i) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await h.freePort();
    const bus = await h.freePort();
    if (port === bus) continue;
    const d = path.join(dir, `node${i}`);
    fs.rmSync(d, { recursive: true, force: true });
    fs.mkdirSync(d, { recursive: true });
    const p = new h.Proc(`redis${i}`, 'redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes',
      '--cluster-port', String(bus), '--cluster-config-file', path.join(d, 'nodes.conf'),
      '--save', '', '--appendonly', 'no', '--dir', d,
    ], log(`redis${i}`));
    p.port = port;
    try {
      await h.until(`cluster node ${i} PING`, async () => {
        if (!p.alive()) throw new Error(`redis-server exited (${p.exitCode})`);
        return (await h.redisCli(port, 'PING')) === 'PONG';
      }, 10000);
      return p;
    } catch (e) {
      await p.stop();
    }
  }
  throw new Error(`cluster node ${i} did not start, see ${log(`redis${i}`)}`);
}

async function startNode() {
  const p = new h.Proc('pushgate', bin, [
    '--listen', `127.0.0.1:${gwPort}`,
    '--redis-url', 'redis+cluster://' + redis.map((r) => `127.0.0.1:${r.port}`).join(','),
    '--api-key', KEY, '--jwt-secret', SECRET, '--public-topics', 'ahead,behind',
    '--log-level', 'debug',
  ], log('pushgate'));
  await h.until(`GET /readyz 200 on 127.0.0.1:${gwPort}`, async () => {
    if (!p.alive()) throw new Error(`pushgate exited (code ${p.exitCode}), see ${log('pushgate')}`);
    return (await h.httpGet(`http://127.0.0.1:${gwPort}/readyz`)).status === 200;
  }, 30000);
  return p;
}

function api(pathname, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({
      host: '127.0.0.1', port: gwPort, path: pathname, method: 'POST', timeout: 5000,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data),
                 Authorization: `Bearer ${KEY}` },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) return reject(new Error(`${pathname}: ${res.statusCode} ${text}`));
        resolve(JSON.parse(text));
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

// Shard subscriptions of a channel, summed over the masters.
async function numsub(name) {
  let n = 0;
  for (const r of redis) {
    const out = (await h.redisCli(r.port, 'PUBSUB', 'SHARDNUMSUB', `pushgate:{${name}}`)).split('\n');
    n += Number(out[1] || 0);
  }
  return n;
}

// A list's entries: {channel: id} and the bare id (pg_since.h: each entry
// splits at its last ':').
function parseList(text) {
  const pos = {};
  let bare = null;
  for (const e of text.split(',')) {
    const i = e.lastIndexOf(':');
    if (i < 0) bare = BigInt(e);
    else pos[e.slice(0, i)] = BigInt(e.slice(i + 1));
  }
  return { pos, bare };
}

test.before(async () => {
  bin = h.preflight();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pushgate-cluster-'));
  for (let i = 0; i < 3; i++) redis.push(await startClusterNode(i));
  await run('redis-cli', ['--cluster', 'create', ...redis.map((r) => `127.0.0.1:${r.port}`),
                          '--cluster-replicas', '0', '--cluster-yes']);
  await h.until('cluster_state:ok on every node', async () => {
    for (const r of redis) {
      if (!(await h.redisCli(r.port, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) return false;
    }
    return true;
  }, 30000);
  gwPort = await h.freePort();
  gw = await startNode();
  browser = await h.launchBrowser();
});

test.after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (gw) await gw.stop();
  for (const r of redis) await r.stop();
  for (const c of [...h.children]) await c.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('eventsource: the browser resumes with the node\'s position list, a lower id on another channel is not skipped', { timeout: 90000 }, async () => {
  // `ahead` runs an hour ahead of `behind` (its history's last id set on):
  // ids rise per channel in a cluster, so after an event of `ahead` the
  // bare id alone would skip what `behind` gets meanwhile
  const first = BigInt((await api('/api/publish', { channel: 'ahead', data: 0 })).id);
  const future = first + 3600n * 1000n * 1000n;   // ids are ms * 1000 + n
  assert.equal(await clusterCli('XSETID', 'pushgate:{ahead}:history', `${future}-0`), 'OK');

  const page = await browser.ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // Each /sse request's Last-Event-ID, recorded in request order at once
  // (as a promise): pushed after an await, the reconnect's entry could
  // still be missing when its message had arrived (it failed so under load)
  const sseRequests = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname !== '/sse') return;
    sseRequests.push(r.allHeaders().then((hdrs) =>
      hdrs['last-event-id'] === undefined ? null : hdrs['last-event-id']));
  });
  assert.equal((await page.goto(`http://127.0.0.1:${gwPort}/`)).status(), 200);
  const token = jwt({ sub: 'u1', exp: Math.floor(Date.now() / 1000) + 3600 });
  await page.evaluate((url) => {
    window.got = [];
    window.opens = 0;
    window.es = new EventSource(url);
    window.es.onopen = () => { window.opens++; };
    window.es.addEventListener('message', (e) => window.got.push({ data: JSON.parse(e.data), id: e.lastEventId }));
  }, `/sse?channels=ahead,behind&token=${token}`);
  await page.waitForFunction(() => window.opens === 1, null, { timeout: 10000 });
  await h.until('both channels subscribed', async () => (await numsub('ahead')) === 1 && (await numsub('behind')) === 1);

  const rid = BigInt((await api('/api/publish', { channel: 'ahead', data: 1 })).id);
  assert.equal(rid, future + 1n);
  await page.waitForFunction(() => window.got.length === 1, null, { timeout: 10000 });
  const [m1] = await page.evaluate(() => window.got);
  assert.equal(m1.data.id, String(rid));
  const list = parseList(m1.id);
  assert.equal(list.bare, rid, m1.id);
  assert.deepEqual(Object.keys(list.pos).sort(), ['behind', 'broadcast', 'user:u1'], m1.id);

  // the backend ends the stream (reconnect allowed): a plain EventSource
  // comes back by itself; `behind` gets a message meanwhile, below `ahead`
  await api('/api/disconnect', { user: 'u1', reconnect: true });
  const lost = BigInt((await api('/api/publish', { channel: 'behind', data: 2 })).id);
  assert.ok(list.pos.behind < lost && lost < rid, `${list.pos.behind} < ${lost} < ${rid}`);

  await page.waitForFunction(() => window.got.some((m) => m.data.channel === 'behind'), null, { timeout: 20000 });
  const lastEventIds = await Promise.all(sseRequests);
  assert.equal(lastEventIds.length, 2, 'one reconnect');
  assert.equal(lastEventIds[0], null);
  assert.equal(lastEventIds[1], m1.id, 'the browser sent the node\'s list back unchanged');
  const got = await page.evaluate(() => window.got);
  assert.deepEqual(got.map((m) => [m.data.channel, m.data.id]), [['ahead', String(rid)], ['behind', String(lost)]]);
  const after = parseList(got[1].id);
  assert.equal(after.bare, rid);
  assert.equal(after.pos.behind, lost);
  assert.deepEqual(errors, []);
  await page.close();
});
