// examples/node/consume.js - read pushgate's events stream from Node.js with node-redis v4.
//
//   cd examples/node && npm ci && node consume.js
//   REDIS_URL=redis://:secret@10.0.0.5:6379/0 GROUP=billing node consume.js
//
// Needs Redis 7 (XAUTOCLAIM) and gateways started with --events. Prints one
// line per event on stdout, for example
//
//   connect user=42 conn=7 node=gw-a id=1764560000000-0
//   message user=42 conn=7 data={"text":"hi"} node=gw-a id=1764560000002-0
//   disconnect user=42 conn=7 code=1000 reason="bye" node=gw-a id=1764560000003-0
//
// (user= is empty for an anonymous connection; data is the client's JSON as
// the gateway stored it; reason is quoted), and what it does on stderr. The
// same program as examples/consume.py and examples/go/consume.go.
//
// Environment (defaults in brackets):
//   REDIS_URL        the Redis the gateways use           [redis://127.0.0.1:6379/0]
//   PUSHGATE_PREFIX  the gateways' --prefix               [pushgate:]
//   GROUP            this backend's consumer group        [backend]
//   CONSUMER         this worker's name within the group  [worker-1]
//   CLAIM_IDLE_MS    take over entries another worker read and left
//                    unacknowledged for this long         [60000]
//   MAX_EVENTS       exit after this many events; 0 = run forever  [0]
//   TIMEOUT          exit after this many seconds; 0 = run forever [0]
//
// Delivery is at least once per group: an entry is acknowledged (XACK) only
// after it was handled, so a worker that dies in between leaves it pending,
// and it is handled again once it has been pending for CLAIM_IDLE_MS, by the
// first worker of the group that looks (each looks when it starts and
// whenever the stream is idle). Make handlers idempotent, keyed by the entry
// id. Workers of one group share the events between them; every group gets
// all of them.
import { createClient } from 'redis';

const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379/0';
const prefix = process.env.PUSHGATE_PREFIX || 'pushgate:';
const group = process.env.GROUP || 'backend';
const consumer = process.env.CONSUMER || 'worker-1';
const claimIdleMs = Number(process.env.CLAIM_IDLE_MS || 60000);
const maxEvents = Number(process.env.MAX_EVENTS || 0);
const timeoutS = Number(process.env.TIMEOUT || 0);
const stream = prefix + 'events';

// One line for one event: the fields its type has, in a fixed order.
function describe(id, f) {
  const parts = [f.type ?? '?', `user=${f.user ?? ''}`, `conn=${f.conn ?? ''}`];
  if (f.channel !== undefined) parts.push(`channel=${f.channel}`);
  if (f.code !== undefined) parts.push(`code=${f.code}`);
  if (f.reason !== undefined) parts.push(`reason=${JSON.stringify(f.reason)}`);
  if (f.data !== undefined) parts.push(`data=${f.data}`);
  parts.push(`node=${f.node ?? ''}`, `id=${id}`);
  return parts.join(' ');
}

const client = createClient({ url });
client.on('error', (err) => console.error('redis:', err.message));
await client.connect();

let done = 0;
// How many entries to ask for (COUNT): no more than this run will handle, so
// that none is read and then left unacknowledged.
const room = () => (maxEvents > 0 ? Math.min(100, maxEvents - done) : 100);

async function handle(id, fields) {
  // Your backend's work goes here (keyed by id: it may come twice).
  console.log(describe(id, fields));
  // Acknowledged only once handled: at least once, never at most once.
  await client.xAck(stream, group, id);
  done++;
}

// Entries of this group read but not acknowledged for CLAIM_IDLE_MS (a worker
// died between XREADGROUP and XACK, maybe this one): take them over and handle
// them. Redis 7 drops from the pending list the ids the stream no longer holds.
async function claimStale() {
  let cursor = '0-0';
  while (room() > 0) {
    const res = await client.xAutoClaim(stream, group, consumer, claimIdleMs, cursor,
                                        { COUNT: room() });
    for (const m of res.messages) {
      if (m) await handle(m.id, m.message);
    }
    cursor = res.nextId;
    if (cursor === '0-0') return;
  }
}

try {
  try { // '$': only events written from now on; '0' would also replay
    // everything the stream still holds (it is capped by --events-max-len).
    await client.xGroupCreate(stream, group, '$', { MKSTREAM: true });
  } catch (err) {
    if (!String(err.message).includes('BUSYGROUP')) throw err; // exists already: fine
  }
  console.error(`reading ${stream} as ${group}/${consumer}`);

  const deadline = timeoutS > 0 ? Date.now() + timeoutS * 1000 : null;
  await claimStale();
  while (room() > 0) {
    let block = 5000;
    if (deadline !== null) {
      block = Math.min(block, deadline - Date.now());
      if (block <= 0) { // BLOCK 0 would wait forever
        console.error(`timeout after ${timeoutS} s`);
        break;
      }
    }
    // '>': entries never delivered to this group.
    const res = await client.xReadGroup(group, consumer, { key: stream, id: '>' },
                                        { COUNT: room(), BLOCK: block });
    if (!res) {
      await claimStale(); // idle: a good time to pick up what others left
      continue;
    }
    for (const { messages } of res) {
      for (const { id, message } of messages) await handle(id, message);
    }
  }
  console.error(`${done} event(s) handled`);
} finally {
  await client.quit();
}
