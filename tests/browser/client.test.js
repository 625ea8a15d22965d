'use strict';
// Unit tests of gateway/www/pushgate.js in Node, with a fake WebSocket, a
// fake EventSource, a fake fetch and fake timers. No gateway, no browser.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const PushGate = require(path.join(__dirname, '..', '..', 'gateway', 'www', 'pushgate.js'));

// ------------------------------------------------------------------ fakes

function fakeClock() {
  let now = 1000;
  let seq = 0;
  const timers = new Map();
  return {
    now: () => now,
    setTimeout: (fn, ms) => { const h = ++seq; timers.set(h, { at: now + ms, fn }); return h; },
    clearTimeout: (h) => { timers.delete(h); },
    pending: () => [...timers.values()].map((t) => t.at - now).sort((a, b) => a - b),
    // Runs every timer due up to now+ms, in time order.
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let next = null;
        for (const [h, t] of timers) if (t.at <= end && (!next || t.at < next[1].at)) next = [h, t];
        if (!next) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].fn();
      }
      now = end;
    },
  };
}

function wsFactory() {
  const sockets = [];
  class FakeWS {
    constructor(url) { this.url = url; this.sent = []; this.readyState = 0; sockets.push(this); }
    send(s) { if (this.readyState !== 1) throw new Error('not open'); this.sent.push(JSON.parse(s)); }
    close(code) { this.readyState = 3; this.closedWith = code; }
    // test side
    open() { this.readyState = 1; this.onopen && this.onopen({}); }
    frame(obj) { this.onmessage && this.onmessage({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) }); }
    drop(code = 1006, reason = '') { this.readyState = 3; this.onclose && this.onclose({ code, reason }); }
  }
  return { FakeWS, sockets };
}

function make(opts = {}) {
  const clock = fakeClock();
  const { FakeWS, sockets } = wsFactory();
  const events = [];
  const pg = new PushGate(Object.assign({
    url: 'http://gw.test:8080', transport: 'ws', channels: ['news'],
    WebSocket: FakeWS, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
    now: clock.now, random: () => 0.5,
  }, opts));
  for (const n of ['message', 'open', 'close', 'error', 'recovery', 'subscribed', 'unsubscribed', 'pong', 'reconnecting',
                   'expiring', 'refreshed']) {
    pg.on(n, (a) => events.push([n, a]));
  }
  const msgs = () => events.filter((e) => e[0] === 'message').map((e) => e[1]);
  return { pg, clock, sockets, events, msgs };
}

const q = (url) => Object.fromEntries(new URL(url).searchParams);

// ------------------------------------------------------------------ tests

test('backoff: full jitter, base 500 ms, cap 30 s', () => {
  assert.equal(PushGate.backoffDelay(0, 500, 30000, () => 0.999999), 499);
  assert.equal(PushGate.backoffDelay(3, 500, 30000, () => 0.5), 2000);
  assert.equal(PushGate.backoffDelay(6, 500, 30000, () => 0.999999), 29999);
  assert.equal(PushGate.backoffDelay(60, 500, 30000, () => 0.999999), 29999);
  assert.equal(PushGate.backoffDelay(5, 500, 30000, () => 0), 0);
});

test('id comparison is exact for 16-digit ids and beyond', () => {
  assert.equal(PushGate.compareIds('1732737600000001', '1732737600000000'), 1);
  assert.equal(PushGate.compareIds('999', '1000'), -1);
  assert.equal(PushGate.compareIds('9007199254740993', '9007199254740992'), 1);
  assert.equal(PushGate.compareIds('0042', '42'), 0);
});

test('ws: URL carries channels and token, messages are dispatched', () => {
  const { sockets, msgs, events } = make({ token: 'a.b-c_d', channels: ['news', 'user:42'] });
  assert.equal(sockets.length, 1);
  const u = new URL(sockets[0].url);
  assert.equal(u.protocol, 'ws:');
  assert.equal(u.pathname, '/ws');
  assert.deepEqual(q(sockets[0].url), { channels: 'news,user:42', token: 'a.b-c_d' });
  sockets[0].open();
  assert.equal(events[0][0], 'open');
  sockets[0].frame({ channel: 'news', event: 'e', id: '1732737600000001', data: { n: 1 } });
  sockets[0].frame({ channel: 'broadcast', data: 'plain' });
  assert.deepEqual(msgs(), [
    { channel: 'news', event: 'e', id: '1732737600000001', data: { n: 1 } },
    { channel: 'broadcast', data: 'plain' },
  ]);
});

test('ws: https origin maps to wss, paths join', () => {
  const { sockets } = make({ url: 'https://x.example/push/' });
  assert.ok(sockets[0].url.startsWith('wss://x.example/push/ws?'));
});

test('ws: invalid channel names are refused up front', () => {
  assert.throws(() => make({ channels: ['bad name'] }), /invalid channel/);
  const { pg } = make();
  assert.throws(() => pg.subscribe('a/b'), /invalid channel/);
});

test('ws: control frames become events, not messages', () => {
  const { sockets, msgs, events } = make();
  sockets[0].open();
  sockets[0].frame({ type: 'pong' });
  sockets[0].frame({ type: 'recovery', complete: false });
  sockets[0].frame({ type: 'error', code: 'bad_command', message: 'nope' });
  assert.equal(msgs().length, 0);
  const names = events.map((e) => e[0]);
  assert.ok(names.includes('pong'));
  assert.ok(names.includes('recovery'));
  assert.deepEqual(events.find((e) => e[0] === 'recovery')[1], { type: 'recovery', complete: false });
  assert.equal(events.find((e) => e[0] === 'error')[1].code, 'bad_command');
});

test('ws: duplicates and stale ids are dropped, lastId tracks the highest', () => {
  const { pg, sockets, msgs } = make();
  sockets[0].open();
  sockets[0].frame({ channel: 'news', id: '10', data: 1 });
  sockets[0].frame({ channel: 'news', id: '10', data: 1 });
  sockets[0].frame({ channel: 'news', id: '9', data: 0 });
  sockets[0].frame({ channel: 'broadcast', id: '11', data: 2 });
  sockets[0].frame({ channel: 'news', data: 'live, no id' });
  assert.deepEqual(msgs().map((m) => m.data), [1, 2, 'live, no id']);
  assert.equal(pg.lastId, '11');
});

test('ws: reconnects with backoff and since=<lastId>, attempt counter resets on open', () => {
  const { pg, sockets, clock, events } = make({ random: () => 0.999 });
  sockets[0].open();
  sockets[0].frame({ channel: 'news', id: '1732737600000005', data: 1 });
  sockets[0].drop(1001, 'going away');
  assert.equal(pg.state, 'reconnecting');
  const close = events.find((e) => e[0] === 'close')[1];
  assert.equal(close.code, 1001);
  assert.equal(close.willReconnect, true);
  assert.ok(close.delay < 500);
  clock.advance(499);
  assert.equal(sockets.length, 2);
  assert.equal(q(sockets[1].url).since, '1732737600000005');
  // attempt 2 fails before opening: next delay below 1000
  sockets[1].drop(1006);
  assert.deepEqual(clock.pending(), [999]);
  clock.advance(999);
  sockets[2].drop(1006);
  assert.deepEqual(clock.pending(), [1998]);
  clock.advance(1998);
  sockets[3].open();
  assert.equal(pg.state, 'open');
  sockets[3].drop(1006);
  assert.deepEqual(clock.pending(), [499]);
});

test('ws: the cap holds at 30 s', () => {
  const { sockets, clock } = make({ random: () => 0.999999 });
  for (let i = 0; i < 12; i++) {
    sockets[sockets.length - 1].drop(1006);
    const [d] = clock.pending();
    assert.ok(d <= 30000, `delay ${d}`);
    clock.advance(d);
  }
  assert.equal(clock.pending().length, 0);
  assert.equal(sockets.length, 13);
});

test('ws: runtime subscriptions are sent, confirmed, and carried into the reconnect URL', () => {
  const { pg, sockets, clock, events } = make();
  pg.subscribe('orders'); // before open: queued
  sockets[0].open();
  assert.deepEqual(sockets[0].sent, [{ type: 'subscribe', channel: 'orders' }]);
  sockets[0].frame({ type: 'subscribed', channel: 'orders' });
  assert.ok(events.some((e) => e[0] === 'subscribed' && e[1].channel === 'orders'));
  pg.subscribe('secret');
  sockets[0].frame({ type: 'error', code: 'forbidden', message: 'not allowed' });
  const err = events.filter((e) => e[0] === 'error').pop()[1];
  assert.equal(err.channel, 'secret');
  pg.subscribe('later');
  sockets[0].drop(1006);
  clock.advance(1000);
  // confirmed runtime channel goes into the URL, the refused one is forgotten,
  // the unconfirmed one is asked for again once open
  assert.equal(q(sockets[1].url).channels, 'news,orders');
  sockets[1].open();
  assert.deepEqual(sockets[1].sent, [{ type: 'subscribe', channel: 'later' }]);
  pg.unsubscribe('orders');
  assert.deepEqual(sockets[1].sent[1], { type: 'unsubscribe', channel: 'orders' });
  sockets[1].drop(1006);
  clock.advance(1000);
  assert.equal(q(sockets[2].url).channels, 'news');
});

test('ws: idle ping every 25 s, dead socket dropped when nothing answers', () => {
  const { sockets, clock, pg } = make();
  sockets[0].open();
  clock.advance(20000);
  sockets[0].frame({ channel: 'news', data: 1 });
  clock.advance(20000); // 20 s since the last frame: no ping yet
  assert.deepEqual(sockets[0].sent, []);
  clock.advance(5000);
  assert.deepEqual(sockets[0].sent, [{ type: 'ping' }]);
  sockets[0].frame({ type: 'pong' });
  clock.advance(25000);
  assert.deepEqual(sockets[0].sent, [{ type: 'ping' }, { type: 'ping' }]);
  clock.advance(10000); // no pong
  assert.equal(pg.state, 'reconnecting');
  assert.equal(sockets[0].closedWith, 1000);
});

test('close() stops everything and connect() starts again', () => {
  const { pg, sockets, clock } = make();
  sockets[0].open();
  pg.close();
  assert.equal(pg.state, 'closed');
  assert.equal(clock.pending().length, 0);
  sockets[0].drop(1006); // late event from the old socket is ignored
  clock.advance(60000);
  assert.equal(sockets.length, 1);
  pg.connect();
  assert.equal(sockets.length, 2);
});

test('a throwing handler does not stop delivery to the next', () => {
  const { pg, sockets } = make();
  const seen = [];
  const origErr = console.error;
  console.error = () => {};
  try {
    pg.on('message', () => { throw new Error('boom'); });
    pg.on('message', (m) => seen.push(m.data));
    sockets[0].open();
    sockets[0].frame({ channel: 'news', data: 7 });
  } finally {
    console.error = origErr;
  }
  assert.deepEqual(seen, [7]);
});

test('token function is called on every connect', async () => {
  let n = 0;
  const { sockets, clock } = make({ token: () => 'tok' + (++n) });
  assert.equal(q(sockets[0].url).token, 'tok1');
  sockets[0].drop(1006);
  clock.advance(1000);
  assert.equal(q(sockets[1].url).token, 'tok2');
});

// ------------------------------------------------------------------ SSE

test('SSE parser: fields, multi-line data, CRLF split across chunks, comments', () => {
  const got = [];
  const p = new PushGate.SSEParser((e) => got.push(e), (ms) => got.push({ retry: ms }));
  p.push(': ping\n\nid: 5\nevent: e\ndata: {"a":\r');
  p.push('\ndata: 1}\r\n\r\nretry: 2000\ndata:x\n');
  p.push('\n');
  assert.deepEqual(got, [
    { event: 'e', data: '{"a":\n1}', id: '5' },
    { retry: 2000 },
    { event: 'message', data: 'x', id: '5' },
  ]);
});

function fakeEventSourceFactory() {
  const list = [];
  class FakeES {
    constructor(url) { this.url = url; this.readyState = 0; this.l = {}; list.push(this); }
    addEventListener(n, f) { (this.l[n] ||= []).push(f); }
    close() { this.readyState = 2; }
    open() { this.readyState = 1; this.onopen && this.onopen({}); }
    emit(name, data, lastEventId = '') { for (const f of this.l[name] || []) f({ data, lastEventId }); }
    fail() { this.readyState = 2; this.onerror && this.onerror({}); }
  }
  return { FakeES, list };
}

test('eventsource: named events need listen(), recovery event, reopen on subscribe', () => {
  const { FakeES, list } = fakeEventSourceFactory();
  const { pg, msgs, events, clock } = make({ transport: 'eventsource', EventSource: FakeES, events: ['e'], WebSocket: null });
  assert.equal(new URL(list[0].url).pathname, '/sse');
  list[0].open();
  list[0].emit('e', JSON.stringify({ channel: 'news', event: 'e', id: '7', data: 1 }), '7');
  list[0].emit('message', JSON.stringify({ channel: 'broadcast', id: '8', data: 2 }), '8');
  list[0].emit('pushgate.recovery', JSON.stringify({ type: 'recovery', complete: false }));
  list[0].emit('other', JSON.stringify({ channel: 'news', event: 'other', id: '9', data: 3 }), '9');
  assert.deepEqual(msgs().map((m) => m.data), [1, 2]);
  pg.listen('other');
  list[0].emit('other', JSON.stringify({ channel: 'news', event: 'other', id: '9', data: 3 }), '9');
  assert.deepEqual(msgs().map((m) => m.data), [1, 2, 3]);
  assert.ok(events.some((e) => e[0] === 'recovery' && e[1].complete === false));
  pg.subscribe('orders');
  assert.equal(list.length, 2);
  assert.equal(list[0].readyState, 2);
  // the highest id, and broadcast's own position below it (README "Redis
  // Cluster": per-channel positions; the same resume on one Redis)
  assert.deepEqual(q(list[1].url), { channels: 'news,orders', since: '9,broadcast:8' });
  list[1].open();
  assert.ok(events.some((e) => e[0] === 'subscribed' && e[1].channel === 'orders'));
  // browser gave up (HTTP error): we reconnect ourselves with since
  list[1].fail();
  assert.equal(pg.state, 'reconnecting');
  clock.advance(30000);
  assert.equal(list.length, 3);
  assert.equal(q(list[2].url).since, '9,broadcast:8');
});

test('since= carries each channel of the connection below the highest id, within the gateway limits', () => {
  const { sockets, clock } = make({ channels: ['news', 'sports'] });
  sockets[0].open();
  sockets[0].frame({ channel: 'sports', id: '5', data: 0 });
  sockets[0].frame({ channel: 'gone', id: '6', data: 0 });        // not a channel of it
  sockets[0].frame({ channel: 'user:42', id: '7', data: 0 });
  sockets[0].frame({ channel: 'news', id: '12', data: 0 });
  sockets[0].drop(1001, "going away");
  clock.advance(30000);
  // news is the highest: the bare id; sports and user:42 from their own
  assert.equal(q(sockets[1].url).since, '12,sports:5,user:42:7');
  // past 4096 bytes (the gateway's limit) the bare id alone
  const many = [];
  for (let i = 0; i < 60; i++) many.push('room.' + 'x'.repeat(60) + i);
  const big = make({ channels: many });
  big.sockets[0].open();
  many.forEach((c, i) => big.sockets[0].frame({ channel: c, id: String(100 + i), data: 0 }));
  big.sockets[0].drop(1001, "going away");
  big.clock.advance(30000);
  assert.equal(q(big.sockets[1].url).since, '159');
});

test('eventsource: a cluster node\'s id: list goes back unchanged; lastId and the duplicate check use the ids', () => {
  const { FakeES, list } = fakeEventSourceFactory();
  const { pg, msgs, clock } = make({ transport: 'eventsource', EventSource: FakeES, WebSocket: null,
                                     channels: ['news', 'sports'] });
  list[0].open();
  // ids rise per channel on a Redis Cluster; the node's id: is the stream's
  // position list after each event, with channels that delivered nothing
  // (sports, broadcast) at the position where they joined
  const l1 = '1764277200124000,sports:1764277200000000,broadcast:1764277199000000';
  list[0].emit('message', JSON.stringify({ channel: 'news', id: '1764277200124000', data: 1 }), l1);
  list[0].emit('message', JSON.stringify({ channel: 'news', id: '1764277200124000', data: 1 }), l1);  // duplicate
  list[0].emit('message', JSON.stringify({ channel: 'news', data: 'live' }), l1);  // no id: keeps the last
  assert.deepEqual(msgs().map((m) => [m.id, m.data]), [['1764277200124000', 1], [undefined, 'live']]);
  assert.equal(pg.lastId, '1764277200124000');
  // the browser gave up: we reconnect with the node's list, not our own
  // (ours would leave sports to the bare id and could skip its next message)
  list[0].fail();
  clock.advance(30000);
  assert.equal(list.length, 2);
  assert.equal(q(list[1].url).since, l1);
  list[1].open();
  list[1].emit('message', JSON.stringify({ channel: 'sports', id: '1764277200001000', data: 2 }),
               '1764277200124000,sports:1764277200001000,broadcast:1764277199000000');
  assert.equal(msgs().length, 3, 'an id below lastId on another channel is no duplicate');
  assert.equal(pg.lastId, '1764277200124000');
  // a new channel list re-opens with it too (the node ignores entries for
  // channels a stream lacks; a new channel takes the bare id)
  pg.subscribe('orders');
  assert.deepEqual(q(list[2].url), { channels: 'news,sports,orders',
                                     since: '1764277200124000,sports:1764277200001000,broadcast:1764277199000000' });
});

test('sse: an id: equal to the message id (one Redis) resumes from our own positions', () => {
  const { FakeES, list } = fakeEventSourceFactory();
  const { msgs, clock } = make({ transport: 'eventsource', EventSource: FakeES, WebSocket: null,
                                 channels: ['news'] });
  list[0].open();
  list[0].emit('message', JSON.stringify({ channel: 'news', id: '20', data: 0 }), '7,news:6');
  list[0].emit('message', JSON.stringify({ channel: 'broadcast', id: '8', data: 1 }), '8');
  list[0].emit('message', JSON.stringify({ channel: 'news', id: '21', data: 2 }), '21');
  // SSE keeps the last id for an event without one: a live-only message
  // after a history-backed one on the same channel is still delivered
  list[0].emit('message', JSON.stringify({ channel: 'news', data: 'live' }), '21');
  assert.deepEqual(msgs().map((m) => m.data), [0, 1, 2, 'live']);
  list[0].fail();
  clock.advance(30000);
  assert.equal(q(list[1].url).since, '21,broadcast:8');
  // an id: that is no since list is not sent back
  list[1].open();
  list[1].emit('message', JSON.stringify({ channel: 'news', id: '22', data: 3 }), '22 x\n');
  list[1].fail();
  clock.advance(30000);
  assert.equal(q(list[2].url).since, '22,broadcast:8');
});

function streamResponse(status, ctype) {
  let ctl;
  const body = new ReadableStream({ start(c) { ctl = c; } });
  const enc = new TextEncoder();
  return {
    res: { status, headers: new Headers({ 'content-type': ctype }), body },
    write: (s) => ctl.enqueue(enc.encode(s)),
    end: () => ctl.close(),
  };
}

const tick = () => new Promise((r) => setImmediate(r));

// A fake fetch for the SSE transport: each call is recorded ({url, init})
// and answered with a new event stream, ended when the request is aborted;
// or, while refuse() gives a status, with that status and no body.
function sseFetch(refuse = () => 0) {
  const calls = [];
  const streams = [];
  const fetch = (url, init) => {
    calls.push({ url, init });
    const status = refuse();
    if (status) return Promise.resolve({ status, headers: new Headers({ 'content-type': 'application/json' }), body: null });
    const s = streamResponse(200, 'text/event-stream');
    streams.push(s);
    init.signal.addEventListener('abort', () => { try { s.end(); } catch {} });
    return Promise.resolve(s.res);
  };
  return { calls, streams, fetch };
}

test('sse (fetch): every event name reaches on(message), resume with since after the stream ends', async () => {
  const { calls, streams, fetch } = sseFetch();
  const { pg, msgs, clock } = make({ transport: 'sse', fetch, token: 'tkn', WebSocket: null });
  await tick();
  assert.equal(pg.state, 'open');
  assert.deepEqual(q(calls[0].url), { channels: 'news', token: 'tkn' }); // no location: cross-origin rules
  streams[0].write('id: 41\nevent: anything\ndata: {"channel":"news","event":"anything","id":"41","data":{"n":1}}\n\n');
  streams[0].write(': ping\n\n');
  streams[0].write('event: pushgate.recovery\ndata: {"type":"recovery","complete":false}\n\n');
  streams[0].end();
  for (let i = 0; i < 5; i++) await tick();
  assert.deepEqual(msgs(), [{ channel: 'news', event: 'anything', id: '41', data: { n: 1 } }]);
  assert.equal(pg.state, 'reconnecting');
  clock.advance(1000);
  await tick();
  assert.equal(q(calls[1].url).since, '41');
  // same message again at the seam is dropped
  streams[1].write('id: 41\ndata: {"channel":"news","id":"41","data":{"n":1}}\n\nid: 42\ndata: {"channel":"news","id":"42","data":{"n":2}}\n\n');
  for (let i = 0; i < 5; i++) await tick();
  assert.deepEqual(msgs().map((m) => m.id), ['41', '42']);
  pg.close();
});

test('sse (fetch): a live-only event after a history one is delivered; a cluster list resumes as sent', async () => {
  const { calls, streams, fetch } = sseFetch();
  const { pg, msgs, clock } = make({ transport: 'sse', fetch, WebSocket: null, channels: ['a', 'b'] });
  await tick();
  const list = '900,b:500,broadcast:400';
  streams[0].write('id: ' + list + '\ndata: {"channel":"a","id":"900","data":1}\n\n');
  streams[0].write('data: {"channel":"a","data":"live"}\n\n');
  streams[0].end();
  for (let i = 0; i < 5; i++) await tick();
  assert.deepEqual(msgs().map((m) => m.data), [1, 'live']);
  assert.equal(pg.lastId, '900');
  clock.advance(1000);
  await tick();
  assert.equal(q(calls[1].url).since, list);
  pg.close();
});

test('sse (fetch): 403 is final, 503 is retried', async () => {
  let status = 503;
  const fetch = () => Promise.resolve({ status, headers: new Headers({ 'content-type': 'application/json' }), body: null });
  const { pg, clock, events } = make({ transport: 'sse', fetch, WebSocket: null });
  await tick();
  assert.equal(pg.state, 'reconnecting');
  assert.equal(events.find((e) => e[0] === 'error')[1].status, 503);
  status = 403;
  clock.advance(1000);
  await tick();
  assert.equal(pg.state, 'closed');
  assert.ok(events.some((e) => e[0] === 'close' && e[1].status === 403 && e[1].willReconnect === false));
});

test('sse (fetch): a refused runtime subscribe is dropped, the stream comes back without it', async () => {
  const urls = [];
  const fetch = (url, init) => {
    urls.push(url);
    const chans = new URL(url).searchParams.get('channels') || '';
    if (chans.includes('secret')) {
      return Promise.resolve({ status: 403, headers: new Headers({ 'content-type': 'application/json' }), body: null });
    }
    const s = streamResponse(200, 'text/event-stream');
    init.signal.addEventListener('abort', () => { try { s.end(); } catch {} });
    return Promise.resolve(s.res);
  };
  const { pg, events } = make({ transport: 'sse', fetch, WebSocket: null });
  await tick();
  assert.equal(pg.state, 'open');
  pg.subscribe('secret');
  for (let i = 0; i < 4; i++) await tick();
  assert.equal(pg.state, 'open');
  assert.deepEqual(urls.map((u) => new URL(u).searchParams.get('channels')), ['news', 'news,secret', 'news']);
  const err = events.find((e) => e[0] === 'error');
  assert.equal(err[1].channel, 'secret');
  assert.equal(err[1].status, 403);
  pg.close();
});

// ------------------------------------------------------------ SPEC §7

// A JWT-shaped string whose payload pushgate.js can read (it never checks
// signatures: only the gateway can).
const fakeJwt = (claims) => `h.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.s`;
const sentTypes = (ws) => ws.sent.map((c) => c.type);
const flush = async () => { for (let i = 0; i < 5; i++) await tick(); };

test('ws: expiring -> getToken -> refresh command; refreshed keeps the socket', async () => {
  let n = 0;
  const { sockets, events } = make({ getToken: () => Promise.resolve('tok' + (++n)) });
  await flush();
  assert.equal(q(sockets[0].url).token, 'tok1');
  sockets[0].open();
  sockets[0].frame({ type: 'expiring', exp: 1700000030 });
  assert.deepEqual(events.find((e) => e[0] === 'expiring')[1], { exp: 1700000030, transport: 'ws' });
  sockets[0].frame({ type: 'expiring', exp: 1700000030 }); // a second notice: still one refresh
  await flush();
  assert.deepEqual(sockets[0].sent, [{ type: 'refresh', token: 'tok2' }]);
  sockets[0].frame({ type: 'refreshed', exp: 1700000090 });
  assert.deepEqual(events.find((e) => e[0] === 'refreshed')[1], { exp: 1700000090, transport: 'ws' });
  assert.equal(sockets.length, 1, 'no reconnect');
  assert.ok(!events.some((e) => e[0] === 'close' || e[0] === 'error'));
  // the next notice refreshes again
  sockets[0].frame({ type: 'expiring', exp: 1700000090 });
  await flush();
  assert.deepEqual(sockets[0].sent[1], { type: 'refresh', token: 'tok3' });
});

test('ws: a refused refresh is an error event without the token, the socket stays', () => {
  const { pg, sockets, events } = make({ getToken: () => 'secret-token' });
  sockets[0].open();
  pg.subscribe('orders');                       // answer pending while the refresh goes out
  sockets[0].frame({ type: 'expiring', exp: 5 });
  assert.deepEqual(sentTypes(sockets[0]), ['subscribe', 'refresh']);
  sockets[0].frame({ type: 'error', code: 'bad_token', message: 'token invalid' });
  const err = events.find((e) => e[0] === 'error')[1];
  assert.equal(err.code, 'bad_token');
  assert.equal(err.refresh, true);
  assert.ok(!JSON.stringify(err).includes('secret-token'), 'the event does not carry the token');
  sockets[0].frame({ type: 'subscribed', channel: 'orders' });
  assert.ok(events.some((e) => e[0] === 'subscribed' && e[1].channel === 'orders' && !e[1].server));
  assert.equal(pg.state, 'open');
  // wrong_user likewise
  sockets[0].frame({ type: 'expiring', exp: 5 });
  sockets[0].frame({ type: 'error', code: 'wrong_user', message: 'other sub' });
  assert.equal(events.filter((e) => e[0] === 'error' && e[1].refresh).length, 2);
  assert.equal(sockets.length, 1);
});

test('ws: a failing getToken is reported and asked again while the socket lasts', () => {
  let fail = true;
  const { pg, sockets, events, clock } = make({ autoConnect: false,
    getToken: () => { if (fail) throw new Error('offline'); return 'ok'; } });
  pg.connect();
  // the connect itself needs a token: it backs off and asks again
  assert.equal(sockets.length, 0);
  assert.equal(events.find((e) => e[0] === 'error')[1].reason, 'token function failed');
  fail = false;
  clock.advance(1000);
  sockets[0].open();
  fail = true;
  sockets[0].frame({ type: 'expiring', exp: 5 });
  const errs = () => events.filter((e) => e[0] === 'error' && e[1].refresh);
  assert.equal(errs().length, 1);
  assert.match(errs()[0][1].reason, /offline/);
  clock.advance(999);
  assert.equal(errs().length, 1);
  clock.advance(1);
  assert.equal(errs().length, 2, 'retried after 1 s');
  fail = false;
  clock.advance(2000);
  assert.deepEqual(sockets[0].sent, [{ type: 'refresh', token: 'ok' }]);
});

test('ws: close codes 4000 / 4001 reconnect with a fresh token, 4003 stops for good', () => {
  let n = 0;
  const { pg, sockets, events, clock } = make({ getToken: () => 't' + (++n) });
  sockets[0].open();
  sockets[0].drop(4000, 'maintenance');
  let c = events.filter((e) => e[0] === 'close').pop()[1];
  assert.equal(c.code, 4000);
  assert.equal(c.reason, 'maintenance');
  assert.equal(c.willReconnect, true);
  assert.ok(c.delay >= 0 && c.delay < 500);
  clock.advance(500);
  assert.equal(q(sockets[1].url).token, 't2');
  sockets[1].open();
  sockets[1].drop(4001, 'token expired');
  assert.equal(events.filter((e) => e[0] === 'close').pop()[1].willReconnect, true);
  clock.advance(500);
  assert.equal(q(sockets[2].url).token, 't3');
  sockets[2].open();
  sockets[2].drop(4003, 'banned');
  c = events.filter((e) => e[0] === 'close').pop()[1];
  assert.deepEqual([c.code, c.reason, c.willReconnect], [4003, 'banned', false]);
  assert.equal(pg.state, 'closed');
  assert.equal(pg.lastClose, c);
  window_online(pg);
  clock.advance(600000);
  assert.equal(sockets.length, 3, 'never reconnects after 4003');
});

// The browser's 'online' event must not revive a client stopped for good.
function window_online(pg) { pg._onOnline(); }

test('ws: 4001 with a fixed token stops (the same token would be refused)', () => {
  const { pg, sockets, events, clock } = make({ token: 'fixed' });
  sockets[0].open();
  sockets[0].drop(4001, 'token expired');
  assert.equal(events.filter((e) => e[0] === 'close').pop()[1].willReconnect, false);
  assert.equal(pg.state, 'closed');
  clock.advance(60000);
  assert.equal(sockets.length, 1);
});

test('ws: 4029 retries on the slower schedule, growing though each socket opened', () => {
  const { sockets, events, clock } = make({ getToken: () => 't', random: () => 0 });
  const delays = [];
  for (let i = 0; i < 5; i++) {
    sockets[i].open();
    sockets[i].drop(4029, 'too many connections');
    const c = events.filter((e) => e[0] === 'close').pop()[1];
    assert.equal(c.willReconnect, true);
    delays.push(c.delay);
    clock.advance(c.delay);
    assert.equal(sockets.length, i + 2);
  }
  assert.deepEqual(delays, [2500, 5000, 10000, 15000, 15000]);
  // a connection that hears from the gateway resets it
  sockets[5].open();
  sockets[5].frame({ type: 'pong' });
  sockets[5].drop(4029, 'too many connections');
  assert.equal(events.filter((e) => e[0] === 'close').pop()[1].delay, 2500);
});

test('ws: backend subscribe is kept (by command, not URL); unsubscribe / forbidden leave the lists', () => {
  const { pg, sockets, events, clock } = make({ channels: ['news', 'orders'] });
  sockets[0].open();
  sockets[0].frame({ type: 'subscribed', channel: 'room.7' });
  assert.deepEqual(events.filter((e) => e[0] === 'subscribed').pop()[1], { channel: 'room.7', server: true });
  sockets[0].frame({ type: 'unsubscribed', channel: 'orders', reason: 'forbidden' });
  assert.deepEqual(events.filter((e) => e[0] === 'unsubscribed').pop()[1],
    { channel: 'orders', server: true, reason: 'forbidden' });
  sockets[0].frame({ type: 'unsubscribed', channel: 'news' });
  assert.deepEqual(events.filter((e) => e[0] === 'unsubscribed').pop()[1], { channel: 'news', server: true });
  sockets[0].drop(1006);
  clock.advance(500);
  assert.deepEqual(q(sockets[1].url), {}, 'neither the removed channels nor the granted one in the URL');
  sockets[1].open();
  assert.deepEqual(sockets[1].sent, [{ type: 'subscribe', channel: 'room.7' }]);
  sockets[1].frame({ type: 'subscribed', channel: 'room.7' });
  assert.deepEqual(pg.currentChannels(), ['room.7'], 'accepted by the gateway: now a confirmed channel');
});

test('eventsource: expiring re-opens with a fresh token and since; disconnect codes decide', async () => {
  const { FakeES, list } = fakeEventSourceFactory();
  let n = 0;
  const { pg, events, clock } = make({ transport: 'eventsource', EventSource: FakeES, WebSocket: null,
    getToken: () => fakeJwt({ sub: 'u', exp: 1000 + (++n) }) });
  list[0].open();
  list[0].emit('message', JSON.stringify({ channel: 'news', id: '7', data: 1 }), '7');
  list[0].emit('pushgate.expiring', JSON.stringify({ type: 'expiring', exp: 1001 }));
  assert.equal(events.find((e) => e[0] === 'expiring')[1].exp, 1001);
  assert.equal(list.length, 2);
  assert.equal(list[0].readyState, 2, 'the old stream is closed');
  assert.deepEqual(q(list[1].url), { channels: 'news', token: fakeJwt({ sub: 'u', exp: 1002 }), since: '7' });
  list[1].open();
  assert.deepEqual(events.find((e) => e[0] === 'refreshed')[1], { exp: 1002, transport: 'eventsource' });
  assert.ok(!events.some((e) => e[0] === 'close'), 'a refresh is not a close');
  // a duplicate at the seam is dropped
  list[1].emit('message', JSON.stringify({ channel: 'news', id: '7', data: 1 }), '7');
  assert.equal(events.filter((e) => e[0] === 'message').length, 1);
  // 4000: re-open, fresh token
  list[1].emit('pushgate.disconnect', JSON.stringify({ code: 4000, reason: 'bye' }));
  assert.equal(list[1].readyState, 2, 'closed before EventSource could retry with the old token');
  assert.deepEqual(events.filter((e) => e[0] === 'close').pop()[1].code, 4000);
  clock.advance(500);
  assert.equal(list.length, 3);
  assert.equal(q(list[2].url).token, fakeJwt({ sub: 'u', exp: 1003 }));
  list[2].open();
  // 4003: closed, for good
  list[2].emit('pushgate.disconnect', JSON.stringify({ code: 4003, reason: 'banned' }));
  const c = events.filter((e) => e[0] === 'close').pop()[1];
  assert.deepEqual([c.code, c.reason, c.willReconnect], [4003, 'banned', false]);
  assert.equal(list[2].readyState, 2);
  assert.equal(pg.state, 'closed');
  clock.advance(600000);
  assert.equal(list.length, 3);
});

test('eventsource: backend subscribe joins the list of the next stream, unsubscribe leaves it', () => {
  const { FakeES, list } = fakeEventSourceFactory();
  const { pg, events } = make({ transport: 'eventsource', EventSource: FakeES, WebSocket: null, getToken: () => 't' });
  list[0].open();
  list[0].emit('pushgate.subscribed', JSON.stringify({ type: 'subscribed', channel: 'room.7' }));
  list[0].emit('pushgate.unsubscribed', JSON.stringify({ type: 'unsubscribed', channel: 'news' }));
  assert.deepEqual(events.filter((e) => e[0] === 'subscribed').pop()[1], { channel: 'room.7', server: true });
  assert.deepEqual(events.filter((e) => e[0] === 'unsubscribed').pop()[1], { channel: 'news', server: true });
  assert.equal(list.length, 1, 'no re-open for either');
  pg.refresh();
  assert.equal(q(list[1].url).channels, 'room.7');
  list[1].open();
  assert.equal(events.filter((e) => e[0] === 'subscribed').length, 1, 'not announced twice');
});

test('sse (fetch): expiring swaps the stream only once the new token is there; 429 waits longer', async () => {
  let status = 200;
  const { calls, streams, fetch } = sseFetch(() => (status !== 200 ? status : 0));
  let release;
  let n = 0;
  const { pg, events, clock } = make({ transport: 'sse', fetch, WebSocket: null,
    getToken: () => (++n === 2 ? new Promise((r) => { release = r; }) : 'tok' + n) });
  await flush();
  assert.equal(pg.state, 'open');
  streams[0].write('id: 5\ndata: {"channel":"news","id":"5","data":1}\n\n');
  streams[0].write('event: pushgate.expiring\ndata: {"type":"expiring","exp":99}\n\n');
  await flush();
  assert.equal(calls.length, 1, 'the old stream stays while getToken runs');
  assert.equal(pg.state, 'open');
  release('tok2');
  await flush();
  assert.equal(calls.length, 2);
  assert.equal(q(calls[1].url).since, '5');
  assert.equal(q(calls[1].url).token, 'tok2');
  assert.ok(events.some((e) => e[0] === 'refreshed'));
  // 429: equal-jitter delay from 5 s
  streams[1].write('event: pushgate.disconnect\ndata: {"code":4000,"reason":"x"}\n\n');
  await flush();
  status = 429;
  clock.advance(500);
  await flush();
  const err = events.filter((e) => e[0] === 'error').pop()[1];
  assert.equal(err.status, 429);
  assert.ok(err.delay >= 2500 && err.delay <= 5000, `delay ${err.delay}`);
  pg.close();
});

test('sse (fetch): a 401 is retried with a new token, and final when getToken gives the same one', async () => {
  const urls = [];
  const fetch = (url) => {
    urls.push(url);
    return Promise.resolve({ status: 401, headers: new Headers({ 'content-type': 'application/json' }), body: null });
  };
  let tok = 'a';
  const { pg, events, clock } = make({ transport: 'sse', fetch, WebSocket: null, getToken: () => tok });
  await flush();
  assert.equal(pg.state, 'reconnecting');
  tok = 'b';
  clock.advance(500);
  await flush();
  assert.equal(urls.length, 2);
  assert.equal(q(urls[1]).token, 'b');
  clock.advance(1000);
  await flush();
  assert.equal(urls.length, 2, 'the same token is not sent again');
  assert.equal(pg.state, 'closed');
  const c = events.filter((e) => e[0] === 'close').pop()[1];
  assert.deepEqual([c.status, c.willReconnect], [401, false]);
});
