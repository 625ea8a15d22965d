'use strict';
// Process and browser plumbing for the browser tests: free ports, a real
// redis-server, a real pushgate, headless Debian Chromium through
// playwright-core. Every process started here is tracked and stopped by PID.
const { spawn, execFile } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');

const CHROMIUM = process.env.PUSHGATE_CHROMIUM || '/usr/bin/chromium';
const OUT = path.join(__dirname, 'out');
const FIX = 'run scripts/deps.sh (it installs Debian chromium and runs `npm ci` in tests/browser)';

// Loud failure, never a skip: a missing prerequisite is a broken setup.
function preflight() {
  const problems = [];
  const bin = process.env.PUSHGATE_BIN;
  if (!bin) problems.push('PUSHGATE_BIN is not set (ctest sets it to the built pushgate binary)');
  else if (!isExecutable(bin)) problems.push(`PUSHGATE_BIN=${bin} is not an executable file`);
  if (!isExecutable(CHROMIUM)) problems.push(`${CHROMIUM} is missing: ${FIX}`);
  try {
    require.resolve('playwright-core', { paths: [__dirname] });
  } catch {
    problems.push(`tests/browser/node_modules/playwright-core is missing: ${FIX}`);
  }
  for (const tool of ['redis-server', 'redis-cli']) {
    if (!which(tool)) problems.push(`${tool} is not on PATH: ${FIX}`);
  }
  if (problems.length) {
    throw new Error('browser tests cannot run:\n  - ' + problems.join('\n  - '));
  }
  fs.mkdirSync(OUT, { recursive: true });
  return bin;
}

function isExecutable(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function which(tool) {
  for (const dir of (process.env.PATH || '').split(':')) {
    if (dir && isExecutable(path.join(dir, tool))) return path.join(dir, tool);
  }
  return null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Polls `check` (async, truthy when ready) until it holds or `ms` passes.
// Polling a readiness condition, not sleeping for a guessed time.
async function until(what, check, ms = 15000, every = 50) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}` + (last ? `: ${last.message}` : ''));
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

const children = new Set();

class Proc {
  constructor(name, cmd, args, logFile) {
    this.name = name;
    this.log = fs.openSync(logFile, 'a');
    fs.writeSync(this.log, `\n=== ${new Date().toISOString()} ${cmd} ${args.join(' ')}\n`);
    this.child = spawn(cmd, args, { stdio: ['ignore', this.log, this.log] });
    this.pid = this.child.pid;
    this.exitCode = undefined;
    this.signal = undefined;
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitCode = code;
        this.signal = signal;
        children.delete(this);
        resolve({ code, signal });
      });
      this.child.on('error', (err) => {
        this.exitCode = -1;
        children.delete(this);
        resolve({ code: -1, signal: null, error: err });
      });
    });
    children.add(this);
  }

  alive() {
    return this.exitCode === undefined;
  }

  // SIGTERM, wait up to `ms`, then SIGKILL. Resolves with the exit status.
  async stop(ms = 15000) {
    if (!this.alive()) return { code: this.exitCode, signal: this.signal };
    try { process.kill(this.pid, 'SIGTERM'); } catch { /* gone */ }
    let timer;
    const res = await Promise.race([
      this.exited,
      new Promise((r) => { timer = setTimeout(() => r(null), ms); }),
    ]);
    clearTimeout(timer);
    if (res) return res;
    try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
    const killed = await this.exited;
    return Object.assign({ killedAfterTimeout: true }, killed);
  }
}

// Last resort if the runner dies before its hooks ran.
process.on('exit', () => {
  for (const c of children) {
    try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

function redisCli(port, ...args) {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`redis-cli ${args.join(' ')}: ${err.message} ${stderr}`));
      resolve(stdout.trim());
    });
  });
}

async function startRedis(logFile) {
  const port = await freePort();
  const p = new Proc('redis', 'redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
  ], logFile);
  p.port = port;
  await until('redis-server PING', async () => {
    if (!p.alive()) throw new Error(`redis-server exited (${p.exitCode}), see ${logFile}`);
    return (await redisCli(port, 'PING')) === 'PONG';
  });
  return p;
}

function httpGet(url, timeout = 3000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function startGateway(bin, { port, redisPort, logFile, extraArgs = [] }) {
  const args = [
    '--listen', `127.0.0.1:${port}`,
    '--redis-url', `redis://127.0.0.1:${redisPort}/0`,
    '--api-key', 'k',
    '--public-topics', 'news',
    '--log-level', 'debug',
    ...extraArgs,
  ];
  const p = new Proc('pushgate', bin, args, logFile);
  p.port = port;
  await until(`GET /readyz 200 on 127.0.0.1:${port}`, async () => {
    if (!p.alive()) throw new Error(`pushgate exited (code ${p.exitCode}, signal ${p.signal}), see ${logFile}`);
    const r = await httpGet(`http://127.0.0.1:${port}/readyz`);
    return r.status === 200;
  }, 20000);
  return p;
}

// FCALL pushgate_publish: history-backed publish straight to Redis.
async function fcallPublish(redisPort, channel, envelope) {
  const out = await redisCli(redisPort, 'FCALL', 'pushgate_publish', '0', channel, JSON.stringify(envelope));
  if (!/^[0-9]+$/.test(out)) throw new Error(`FCALL pushgate_publish ${channel} answered ${JSON.stringify(out)}`);
  return out;
}

const CHROMIUM_ARGS = [
  '--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// A persistent context on a fresh, temporary user-data-dir.
async function launchBrowser() {
  const { chromium } = require(require.resolve('playwright-core', { paths: [__dirname] }));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pushgate-chromium-'));
  let ctx;
  try {
    ctx = await chromium.launchPersistentContext(dir, {
      executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true,
      viewport: { width: 1280, height: 860 },
    });
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    ctx,
    async close() {
      try { await ctx.close(); } finally { fs.rmSync(dir, { recursive: true, force: true }); }
    },
  };
}

// A process's log file under OUT, by name.
const logPath = (name) => path.join(OUT, `${name}.log`);

// A test file's teardown: the browser, then its gateway and Redis (each may
// be unset if test.before failed part way), then any child still running.
async function stopAll({ browser, gw, redis }) {
  if (browser) await browser.close().catch(() => {});
  if (gw) await gw.stop();
  if (redis) await redis.stop();
  for (const c of [...children]) await c.stop();
}

// An HS256 token for claims, signed with secret, as a backend mints one.
function jwtHS256(secret, claims) {
  const b64url = (buf) => Buffer.from(buf).toString('base64url');
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = b64url(crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest());
  return `${head}.${body}.${sig}`;
}

module.exports = {
  OUT, preflight, freePort, until, Proc, redisCli, startRedis, startGateway,
  httpGet, fcallPublish, launchBrowser, children, logPath, stopAll, jwtHS256,
};
