// examples/node/publish.js - publish to pushgate from Node.js with node-redis v4.
//
//   cd examples/node && npm ci && node publish.js
//   REDIS_URL=redis://:secret@10.0.0.5:6379/0 CHANNEL=news node publish.js
//
// Environment (defaults in brackets):
//   REDIS_URL        the Redis the gateways use   [redis://127.0.0.1:6379/0]
//   PUSHGATE_PREFIX  the gateways' --prefix       [pushgate:]
//   CHANNEL          the pushgate channel         [user:42]
//
// Sends {"event":"order.shipped","data":{"order":7}} twice: with PUBLISH
// (live only, no id) and with FCALL (kept in history, returns the message id).
// At least one gateway must have started once against this Redis, so that the
// function is loaded.
import { createClient } from 'redis';

const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379/0';
const prefix = process.env.PUSHGATE_PREFIX || 'pushgate:';
const channel = process.env.CHANNEL || 'user:42';
// pushgate: -> pushgate_publish (every character other than a letter or digit
// becomes "_").
const fn = prefix.replace(/[^A-Za-z0-9]/g, '_') + 'publish';

const client = createClient({ url });
client.on('error', (err) => console.error('redis:', err.message));
await client.connect();
try {
  const payload = JSON.stringify({ event: 'order.shipped', data: { order: 7 } });

  // Live only: the full Redis channel, with the prefix.
  const nodes = await client.publish(prefix + channel, payload);
  console.log(`PUBLISH ${prefix}${channel} -> ${nodes} node(s)`);

  // With history: the pushgate channel name, without the prefix, sent as a
  // raw command; the answer is the new id as a string.
  const id = await client.sendCommand(['FCALL', fn, '0', channel, payload]);
  console.log(`FCALL ${fn} ${channel} -> id ${id}`);
} finally {
  await client.quit();
}
