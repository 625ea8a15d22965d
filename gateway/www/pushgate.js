/*!
 * pushgate.js - browser client for the pushgate push gateway.
 * No dependencies, no build step. Load it with
 *     <script src="/pushgate.js"></script>
 * and use window.PushGate (also exported through module.exports for Node).
 *
 *   var pg = new PushGate({
 *     url: location.origin,        // gateway base URL (http(s):// or ws(s)://)
 *     transport: 'ws',             // 'ws' | 'sse' | 'eventsource' (see below)
 *     token: 'eyJ...',             // optional fixed JWT
 *     getToken: function () {...}, // optional: returns a JWT or a Promise of
 *                                  //   one; called for every (re)connect and
 *                                  //   every refresh (wins over `token`; a
 *                                  //   function given as `token` works too)
 *     channels: ['news'],          // topics to join at connect
 *     since: '1700000000000000'    // optional: resume after this id
 *   });
 *   pg.on('message', function (m) { m.channel, m.event, m.id, m.data });
 *   pg.on('open' | 'close' | 'error' | 'recovery' | 'state' |
 *         'subscribed' | 'unsubscribed' | 'reconnecting' | 'pong' |
 *         'expiring' | 'refreshed', fn);
 *   pg.subscribe('orders'); pg.unsubscribe('orders'); pg.close(); pg.connect();
 *   pg.refresh()  // hand the gateway a fresh token now (see Token lifetime)
 *   pg.send(data) // WebSocket: data (any JSON) to the backends through the
 *                 //   gateway's events stream; a Promise of {id, ref} (see
 *                 //   Sending to the backends)
 *   pg.lastId     // highest message id received so far (decimal string) or null
 *   pg.lastClose  // the last 'close' event's object (see Why a connection
 *                 //   closed) or null
 *   pg.state      // 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'
 *
 * Transports
 *   'ws'          WebSocket to /ws. Runtime subscribe/unsubscribe are commands
 *                 on the open socket; an idle socket sends {"type":"ping"}
 *                 every pingInterval ms and is dropped if nothing answers.
 *   'sse'         Server-Sent Events read with fetch() and a streaming body.
 *                 Every message reaches on('message') whatever its event name,
 *                 and the token travels in an Authorization header rather than
 *                 in the URL. Falls back to EventSource where fetch streaming
 *                 is missing.
 *   'eventsource' Server-Sent Events through the browser's EventSource. The
 *                 browser dispatches a frame that has an `event:` line only to
 *                 listeners of that exact name, so such messages reach
 *                 on('message') only for the names listed in options.events
 *                 (or added with pg.listen(name)). Frames without an event
 *                 name always arrive.
 *   For both SSE flavours a runtime subscribe/unsubscribe re-opens the stream
 *   with the new channel list and since=<lastId>.
 *
 * Delivery guarantees kept by the client
 *   - ids are tracked; a reconnect asks for since=<highest id seen>, plus
 *     <channel>:<id> for each channel whose own last id is below it (a Redis
 *     Cluster orders ids per channel only), so the gateway replays what was
 *     missed from history; over SSE from a Redis Cluster node, whose `id:`
 *     is that list as the node keeps it, the last one received, unchanged;
 *   - a message whose id is not above the last id seen on its channel is a
 *     duplicate and is dropped;
 *   - reconnects back off exponentially (base 500 ms, cap 30 s, full jitter);
 *   - 'recovery' fires when the gateway says history did not reach back far
 *     enough (some messages were lost): the app should reload its state.
 *
 * Token lifetime (a token with `exp`, on a gateway with a JWT key)
 *   The gateway warns --token-refresh-window seconds before `exp` (WebSocket
 *   {"type":"expiring","exp":E}, SSE event pushgate.expiring) and closes an
 *   unrefreshed connection at `exp` with 4001. On the warning the client
 *   emits 'expiring' {exp, transport} and, when it has getToken, calls it:
 *     'ws'   sends {"type":"refresh","token":...} on the open socket; the
 *            answer {"type":"refreshed","exp":E2} becomes 'refreshed' {exp};
 *            an {"type":"error","code":"bad_token"|"wrong_user"} answer
 *            becomes 'error' {code, refresh: true} and the socket stays (the
 *            gateway keeps the old token and closes with 4001 at its exp; the
 *            reconnect then asks getToken again).
 *     'sse', 'eventsource'  re-open the stream with the fresh token and
 *            since=<lastId>, so history fills the seam and the per-channel
 *            duplicate check drops what arrives twice; then 'refreshed' {exp}
 *            with the exp read from the new token's payload (or null).
 *   A getToken that throws or rejects is reported as 'error' {refresh: true}
 *   and asked again after 1, 2, 4 .. 15 s while the connection lasts.
 *   There is no client-side timer from the token's own `exp`: the gateway's
 *   clock is the one that enforces `exp`, a browser's may be minutes off, and
 *   the gateway warns at once when a connection opens inside the window, so
 *   its notice alone is both sufficient and on time. getToken should return
 *   a token with more life left than the window. Without getToken the client
 *   only emits 'expiring'; set pg.token and call pg.refresh() to renew.
 *
 * Why a connection closed
 *   'close' gets {code, reason, status, wasOpen, willReconnect, delay}:
 *   `code` is the WebSocket close code (or, on SSE, the code of the
 *   pushgate.disconnect event), `status` the HTTP status of a refused
 *   fetch-SSE request, `delay` the ms until the next attempt. The gateway's
 *   own codes (SPEC section 7):
 *     4000  disconnected by the backend: reconnect with backoff, fresh token
 *     4001  token expired unrefreshed: reconnect with a fresh token (without
 *           getToken the same token would be refused, so it stops instead)
 *     4003  disconnected for good or revoked: stop, never reconnect
 *     4029  too many connections for this user (SSE: HTTP 429): retry later,
 *           on a slower schedule (see _busyDelay)
 *   A WebSocket closed with 4029 was upgraded first, so 'open' precedes it.
 *   A fetch-SSE request refused with a 4xx (but 408 / 429) is final without
 *   getToken; with it the next attempt asks getToken again, and stops if it
 *   returns the very token that was just refused (no retry loop).
 *
 * Sending to the backends (SPEC section 9)
 *   pg.send(data) sends {"type":"send","data":data,"ref":r} with a ref of its
 *   own and returns a Promise. It resolves with {id, ref} once the gateway
 *   answers "sent": the message is then in the Redis stream <prefix>events,
 *   `id` its entry id. It rejects with an Error carrying `code` when the
 *   gateway refused it, and nothing was stored: "events_off" (no --events),
 *   "unavailable" (Redis down), "rate_limited" (past --client-send-rate a
 *   second), "too_big"; with "unknown" when Redis was lost before it
 *   answered (stored or not, no one can tell); with "not_open" at once when
 *   no WebSocket is open (SSE cannot send); and with "closed" when the
 *   connection went before the answer (the message may have been stored).
 *   Nothing is re-sent by the client: the app decides whether to retry.
 *   Presence (who is online) is read by the backend with its API key; the
 *   browser has no presence call, since that key must stay secret.
 *
 * Channels the gateway adds or removes
 *   A backend may subscribe or unsubscribe a user's connections (SPEC 7).
 *   'subscribed' / 'unsubscribed' then carry {channel, server: true}, and
 *   'unsubscribed' a `reason` ("forbidden" when a refreshed token no longer
 *   allows it). A removed channel leaves the client's list, so no reconnect
 *   asks for it again. An added one is kept: a re-opened SSE stream lists it,
 *   and a new WebSocket asks for it with a subscribe command after opening
 *   (never in the URL: a channel the token does not allow would make the
 *   whole reconnect fail with 403). When the gateway refuses it then, it is
 *   dropped and reported as 'error' {channel}; the backend must grant it again.
 */
(function (root, factory) {
  'use strict';
  var PushGate = factory(root);
  if (typeof module === 'object' && module && module.exports) {
    module.exports = PushGate;      // CommonJS (Node tests, bundlers)
  } else if (root) {
    root.PushGate = PushGate;       // classic <script>: window.PushGate
  }
})(typeof globalThis !== 'undefined' ? globalThis
  : typeof self !== 'undefined' ? self
  : typeof window !== 'undefined' ? window : this, function (root) {
  'use strict';

  var CHANNEL_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;
  var ID_RE = /^[0-9]+$/;
  // A since list as a node writes it in `id:` (digits, channel characters,
  // ',' and ':'), within what a node accepts back.
  var SINCE_RE = /^[A-Za-z0-9_.:@,-]{1,4096}$/;

  // ---------------------------------------------------------------- helpers

  function normId(id) {
    if (id === undefined || id === null) return null;
    var s = String(id);
    if (!ID_RE.test(s)) return null;
    s = s.replace(/^0+(?=.)/, '');
    return s;
  }

  // Compares two decimal strings of digits (no leading zeros) exactly, for
  // any length: longer is larger, equal length compares as text.
  function cmpId(a, b) {
    if (a.length !== b.length) return a.length < b.length ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  // Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^n)).
  function backoffDelay(attempt, base, cap, random) {
    var ceiling = base * Math.pow(2, Math.min(attempt, 30));
    if (ceiling > cap) ceiling = cap;
    return Math.floor((random || Math.random)() * ceiling);
  }

  function validChannel(ch) {
    return typeof ch === 'string' && CHANNEL_RE.test(ch);
  }

  // The `exp` claim of a JWT, read without checking anything (only the
  // gateway can check a token); null when there is none or it is unreadable.
  function tokenExp(token) {
    var parts = typeof token === 'string' ? token.split('.') : [];
    if (parts.length !== 3 || !root || typeof root.atob !== 'function') return null;
    try {
      var b = parts[1].replace(/-/g, '+').replace(/_/g, '/');
      while (b.length % 4) b += '=';
      var claims = JSON.parse(root.atob(b));
      return claims && typeof claims.exp === 'number' ? claims.exp : null;
    } catch (e) {
      return null;
    }
  }

  // SSE event names the gateway itself sends (besides deliveries).
  var SSE_CONTROL = ['pushgate.recovery', 'pushgate.expiring', 'pushgate.disconnect',
                     'pushgate.subscribed', 'pushgate.unsubscribed'];

  function toList(channels) {
    if (channels === undefined || channels === null || channels === '') return [];
    if (typeof channels === 'string') channels = channels.split(',');
    var out = [];
    for (var i = 0; i < channels.length; i++) {
      var c = String(channels[i]).trim();
      if (c === '') continue;
      if (!validChannel(c)) {
        throw new TypeError('PushGate: invalid channel name "' + c + '"');
      }
      if (out.indexOf(c) < 0) out.push(c);
    }
    return out;
  }

  function defaultOrigin() {
    if (root && root.location && root.location.origin &&
        root.location.origin !== 'null') {
      return root.location.origin;
    }
    return '';
  }

  // Incremental text/event-stream parser (WHATWG HTML "event stream
  // interpretation"). onEvent({event, data, id}) per dispatched event;
  // onRetry(ms) for retry: lines; onActivity() for every line incl. comments.
  function SSEParser(onEvent, onRetry) {
    this.buf = '';
    this.data = [];
    this.hasData = false;
    this.event = '';
    this.lastEventId = '';
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.pendingCR = false;
  }
  SSEParser.prototype.push = function (chunk) {
    var text = this.buf + chunk;
    var start = 0;
    if (this.pendingCR && text.charAt(0) === '\n') start = 1;
    this.pendingCR = false;
    for (var i = start; i < text.length; i++) {
      var c = text.charCodeAt(i);
      if (c === 10 || c === 13) {
        this.line(text.slice(start, i));
        if (c === 13) {
          if (i + 1 < text.length) {
            if (text.charCodeAt(i + 1) === 10) i++;
          } else {
            this.pendingCR = true;
          }
        }
        start = i + 1;
      }
    }
    this.buf = text.slice(start);
  };
  SSEParser.prototype.line = function (line) {
    if (line === '') {
      if (this.hasData) {
        var ev = { event: this.event || 'message', data: this.data.join('\n'),
                   id: this.lastEventId };
        this.data = [];
        this.hasData = false;
        this.event = '';
        this.onEvent(ev);
      } else {
        this.event = '';
      }
      return;
    }
    if (line.charAt(0) === ':') return;
    var colon = line.indexOf(':');
    var field = colon < 0 ? line : line.slice(0, colon);
    var value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charAt(0) === ' ') value = value.slice(1);
    if (field === 'data') {
      this.data.push(value);
      this.hasData = true;
    } else if (field === 'event') {
      this.event = value;
    } else if (field === 'id') {
      if (value.indexOf('\u0000') < 0) this.lastEventId = value;
    } else if (field === 'retry') {
      if (/^[0-9]+$/.test(value) && this.onRetry) this.onRetry(parseInt(value, 10));
    }
  };

  // ---------------------------------------------------------------- client

  function PushGate(options) {
    if (!(this instanceof PushGate)) return new PushGate(options);
    var o = options || {};
    this.options = o;
    this.url = String(o.url !== undefined && o.url !== null ? o.url : defaultOrigin())
      .replace(/\/+$/, '');
    var t = o.transport || 'ws';
    if (t === 'websocket') t = 'ws';
    if (t !== 'ws' && t !== 'sse' && t !== 'eventsource') {
      throw new TypeError('PushGate: transport must be "ws", "sse" or "eventsource"');
    }
    this.transport = t;
    this.token = o.token || null;
    this.getToken = typeof o.getToken === 'function' ? o.getToken : null;
    this.channels = toList(o.channels);
    this.backoffBase = o.backoffBase > 0 ? o.backoffBase : 500;
    this.backoffMax = o.backoffMax > 0 ? o.backoffMax : 30000;
    // After 4029 / HTTP 429 (see _busyDelay).
    this.busyBackoffBase = o.busyBackoffBase > 0 ? o.busyBackoffBase : 5000;
    this.pingInterval = o.pingInterval > 0 ? o.pingInterval : 25000;
    this.pingTimeout = o.pingTimeout > 0 ? o.pingTimeout : 10000;
    // fetch-SSE: drop the stream when not even a ": ping" arrived this long.
    this.sseIdleTimeout = o.sseIdleTimeout > 0 ? o.sseIdleTimeout : 75000;
    this.reconnect = o.reconnect !== false;
    this.random = o.random || Math.random;
    this.events = toEventList(o.events);
    this.WebSocket = o.WebSocket || (root && root.WebSocket);
    this.EventSource = o.EventSource || (root && root.EventSource);
    this.fetch = o.fetch || (root && root.fetch && root.fetch.bind(root));
    this.setTimeout = o.setTimeout || function (f, ms) { return setTimeout(f, ms); };
    this.clearTimeout = o.clearTimeout || function (h) { clearTimeout(h); };
    this.now = o.now || function () { return Date.now(); };

    this.lastId = normId(o.since);
    this.lastClose = null;
    this._chanLast = {};          // channel -> last id delivered on it
    this._sseSince = null;        // SSE: the node's last `id:` when a position list
    this._handlers = {};
    this._runtime = {};           // channel -> 'pending' | 'confirmed' (WS)
    this._runtimeOrder = [];
    this._sent = [];              // WS commands awaiting their answer, in order
    this._sends = {};             // ref -> {resolve, reject}: send() awaiting sent/error
    this._sendSeq = 0;
    this.state = 'idle';
    this._attempt = 0;
    this._busyAttempt = 0;        // 4029 / 429 refusals in a row
    this._refreshing = null;      // gen of the connection whose refresh is under way
    this._refreshAttempt = 0;     // failed getToken calls in a row while refreshing
    this._refreshTimer = null;
    this._sseRefreshed = false;   // the SSE stream being opened replaces an expiring one
    this._connToken = null;       // token of the current connection
    this._refused = null;         // {token, status}: a 4xx the token function may cure
    this._conn = null;            // the live transport object
    this._gen = 0;                // bumps on every (re)connect; stale callbacks check it
    this._retryTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._idleTimer = null;
    this._serverRetry = null;
    this._lastRecv = 0;

    var self = this;
    this._onOnline = function () {
      if (self.state === 'reconnecting') self._openNow();
    };
    if (o.autoConnect !== false) this.connect();
  }

  function toEventList(ev) {
    if (!ev) return [];
    if (typeof ev === 'string') ev = ev.split(',');
    var out = [];
    for (var i = 0; i < ev.length; i++) {
      var e = String(ev[i]).trim();
      if (e && e !== 'message' && out.indexOf(e) < 0) out.push(e);
    }
    return out;
  }

  PushGate.version = '1.1.0';
  PushGate.backoffDelay = backoffDelay;
  PushGate.tokenExp = tokenExp;
  PushGate.compareIds = function (a, b) { return cmpId(normId(a), normId(b)); };
  PushGate.SSEParser = SSEParser;

  var P = PushGate.prototype;

  // -------------------------------------------------------------- events

  P.on = function (name, fn) {
    (this._handlers[name] || (this._handlers[name] = [])).push(fn);
    var self = this;
    return function () { self.off(name, fn); };
  };

  P.off = function (name, fn) {
    var list = this._handlers[name];
    if (!list) return this;
    if (!fn) { delete this._handlers[name]; return this; }
    var i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
    return this;
  };

  P.once = function (name, fn) {
    var off = this.on(name, function (a) { off(); fn(a); });
    return off;
  };

  P._emit = function (name, arg) {
    var list = this._handlers[name];
    if (!list || !list.length) return;
    list = list.slice();
    for (var i = 0; i < list.length; i++) {
      try {
        list[i].call(this, arg);
      } catch (e) {
        // A throwing handler must not break delivery to the others.
        if (root && root.console && root.console.error) root.console.error(e);
      }
    }
  };

  P._setState = function (s) {
    if (this.state === s) return;
    this.state = s;
    this._emit('state', s);
  };

  // -------------------------------------------------------------- public API

  // Channels the next connection will ask for in its URL.
  P.currentChannels = function () {
    var list = this.channels.slice();
    for (var i = 0; i < this._runtimeOrder.length; i++) {
      var c = this._runtimeOrder[i];
      if (list.indexOf(c) >= 0) continue;
      // WS: only channels the gateway already accepted go into the URL, so a
      // refused one cannot make every reconnect fail with 403 (a channel the
      // backend granted is asked for by command after opening). SSE has no
      // other way to ask, so every wanted channel goes in.
      if (this.transport !== 'ws' || this._runtime[c] === 'confirmed') list.push(c);
    }
    return list;
  };

  P.connect = function () {
    if (this.state === 'connecting' || this.state === 'open') return this;
    this._attempt = 0;
    this._refused = null;
    if (root && root.addEventListener) root.addEventListener('online', this._onOnline);
    this._openNow();
    return this;
  };

  P.close = function () {
    var wasOpen = this.state === 'open';
    this._teardown();
    if (root && root.removeEventListener) root.removeEventListener('online', this._onOnline);
    this._setState('closed');
    if (wasOpen) {
      this.lastClose = { code: 1000, reason: 'closed by client', wasOpen: true, willReconnect: false };
      this._emit('close', this.lastClose);
    }
    return this;
  };

  // Gives the gateway a fresh token now (getToken, else pg.token): WebSocket
  // sends a refresh command, SSE re-opens its stream. The outcome arrives as
  // 'refreshed' or 'error' {refresh: true}. Only while open: every connect
  // asks for a token anyway.
  P.refresh = function () {
    if (this.state === 'open' && this._conn) this._refresh(this._gen);
    return this;
  };

  P.send = function (data) {
    var self = this;
    return new Promise(function (resolve, reject) {
      var c = self._conn;
      if (self.state !== 'open' || !c || c.kind !== 'ws') {
        reject(sendError('not_open', self.transport === 'ws'
          ? 'not connected' : 'send needs the WebSocket transport'));
        return;
      }
      var ref = 'pg' + (++self._sendSeq);
      try {
        c.ws.send(JSON.stringify({ type: 'send', data: data === undefined ? null : data, ref: ref }));
      } catch (e) {
        reject(sendError('not_open', 'the socket refused the frame'));
        return;
      }
      self._sends[ref] = { resolve: resolve, reject: reject };
    });
  };

  function sendError(code, message, ref) {
    var e = new Error(message || code);
    e.code = code;
    if (ref !== undefined) e.ref = ref;
    return e;
  }

  // The connection went: every send() still waiting is told so.
  P._failSends = function () {
    var s = this._sends;
    this._sends = {};
    for (var ref in s) {
      if (Object.prototype.hasOwnProperty.call(s, ref)) {
        s[ref].reject(sendError('closed', 'the connection closed before the gateway answered ' +
          '(the message may have been stored)', ref));
      }
    }
  };

  P.subscribe = function (channel) {
    var list = toList(channel);
    for (var i = 0; i < list.length; i++) this._subscribeOne(list[i]);
    return this;
  };

  P.unsubscribe = function (channel) {
    var list = toList(channel);
    for (var i = 0; i < list.length; i++) this._unsubscribeOne(list[i]);
    return this;
  };

  // EventSource only: also deliver SSE frames whose event name is `name`.
  P.listen = function (name) {
    var l = toEventList([name]);
    if (!l.length || this.events.indexOf(l[0]) >= 0) return this;
    this.events.push(l[0]);
    if (this._conn && this._conn.kind === 'eventsource') {
      this._conn.addName(l[0]);
    }
    return this;
  };

  P._subscribeOne = function (ch) {
    if (this.channels.indexOf(ch) >= 0 || this._runtime[ch]) return;
    this._runtime[ch] = 'pending';
    this._runtimeOrder.push(ch);
    if (this.transport === 'ws') {
      if (this.state === 'open') this._sendCmd({ type: 'subscribe', channel: ch });
      // otherwise it is sent once the next connection opens
    } else if (this.state !== 'closed' && this.state !== 'idle') {
      this._reopenSSE();
    }
  };

  // Drops a channel from every list a (re)connect asks for. True if known.
  P._forget = function (ch) {
    var known = false;
    var i = this.channels.indexOf(ch);
    if (i >= 0) { this.channels.splice(i, 1); known = true; }
    if (this._runtime[ch]) {
      delete this._runtime[ch];
      this._runtimeOrder.splice(this._runtimeOrder.indexOf(ch), 1);
      known = true;
    }
    return known;
  };

  // A channel the gateway subscribed us to on its own (a backend's order).
  // Kept so the next connection asks for it too (see the header).
  P._grant = function (ch) {
    if (!validChannel(ch) || this.channels.indexOf(ch) >= 0 || this._runtime[ch]) return;
    this._runtime[ch] = 'granted';
    this._runtimeOrder.push(ch);
  };

  P._unsubscribeOne = function (ch) {
    var known = this._forget(ch);
    if (this.transport === 'ws') {
      // Ask even for an implicit channel: the gateway answers with an error.
      if (this.state === 'open') this._sendCmd({ type: 'unsubscribe', channel: ch });
    } else if (known) {
      if (this.state !== 'closed' && this.state !== 'idle') this._reopenSSE();
      this._emit('unsubscribed', { channel: ch });
    }
  };

  // -------------------------------------------------------------- plumbing

  P._teardown = function () {
    this._gen++;
    this._clearTimers();
    var c = this._conn;
    this._conn = null;
    this._sent = [];
    this._failSends();
    if (c) {
      try { c.close(); } catch (e) { /* already gone */ }
    }
  };

  P._clearTimers = function () {
    if (this._retryTimer !== null) { this.clearTimeout(this._retryTimer); this._retryTimer = null; }
    if (this._pingTimer !== null) { this.clearTimeout(this._pingTimer); this._pingTimer = null; }
    if (this._pongTimer !== null) { this.clearTimeout(this._pongTimer); this._pongTimer = null; }
    if (this._idleTimer !== null) { this.clearTimeout(this._idleTimer); this._idleTimer = null; }
    if (this._refreshTimer !== null) { this.clearTimeout(this._refreshTimer); this._refreshTimer = null; }
  };

  P._buildUrl = function (path, token, includeSince) {
    var base = this.url;
    if (path === '/ws') {
      base = base.replace(/^http(s?):/i, 'ws$1:');
      if (base === '' || base.charAt(0) === '/') {
        // relative: same host as the page
        var loc = root && root.location;
        base = (loc && loc.protocol === 'https:' ? 'wss://' : 'ws://') + (loc ? loc.host : '') + base;
      }
    } else {
      base = base.replace(/^ws(s?):/i, 'http$1:');
    }
    var q = [];
    var chans = this.currentChannels();
    if (chans.length) q.push('channels=' + chans.join(','));
    if (token) q.push('token=' + encodeURIComponent(token));
    if (includeSince && this.lastId !== null) q.push('since=' + encodeURIComponent(this._since(chans)));
    return base + path + (q.length ? '?' + q.join('&') : '');
  };

  // What since= carries: the highest id seen, then "<channel>:<id>" for each
  // channel of the connection whose own last id is below it. On one Redis
  // ids reach a node in order over one link, so the bare id alone is exact;
  // in a Redis Cluster ids rise per channel and arrive over one link per
  // shard, so a message of a slower shard can still be in flight below the
  // highest id: each channel then resumes from its own position (README
  // "Redis Cluster"), and the bare id covers the channels that delivered
  // nothing yet. A list past the gateway's limits (66 entries, 4096 bytes)
  // falls back to the bare id. Over SSE from a cluster node the node's own
  // list (its last `id:`) goes back instead, unchanged: it also has the
  // channels that delivered nothing, at the position where they joined.
  P._since = function (chans) {
    if (this._sseSince !== null) return this._sseSince;
    var out = this.lastId, n = 0;
    for (var ch in this._chanLast) {
      if (!Object.prototype.hasOwnProperty.call(this._chanLast, ch)) continue;
      if (chans.indexOf(ch) < 0 && ch !== 'broadcast' && ch.indexOf('user:') !== 0) continue;
      var id = this._chanLast[ch];
      if (cmpId(id, this.lastId) >= 0) continue;
      out += ',' + ch + ':' + id;
      if (++n > 65 || out.length > 4096) return this.lastId;
    }
    return out;
  };

  // getToken, or a function given as `token`, or null for a fixed token.
  P._tokenFn = function () {
    if (typeof this.getToken === 'function') return this.getToken;
    if (typeof this.token === 'function') return this.token;
    return null;
  };

  // Calls ok(token) with a token for connection `gen` (from the token
  // function, sync or Promise, else the fixed one), or fail(error). Neither
  // is called once `gen` is stale.
  P._withToken = function (gen, ok, fail) {
    var fn = this._tokenFn();
    if (!fn) { ok(this.token || null); return; }
    var self = this;
    var r;
    try { r = fn(); } catch (e) { fail(e); return; }
    if (r && typeof r.then === 'function') {
      r.then(function (v) { if (gen === self._gen) ok(v || null); },
             function (e) { if (gen === self._gen) fail(e); });
      return;
    }
    ok(r || null);
  };

  // token: one already fetched (an SSE refresh), else ask for one.
  P._openNow = function (token) {
    this._teardown();
    var gen = this._gen;
    var self = this;
    this._setState('connecting');
    if (token !== undefined) { this._start(gen, token); return; }
    this._withToken(gen, function (t) {
      var r = self._refused;
      self._refused = null;
      if (r && r.token === t) {
        // The request this token made was refused (fetch-SSE sees the 4xx);
        // asking again with it would only loop.
        self._fail(gen, { status: r.status, reason: 'HTTP ' + r.status + ' again for the same token', fatal: true });
        return;
      }
      self._start(gen, t);
    }, function (e) {
      self._fail(gen, { reason: 'token function failed', error: e });
    });
  };

  P._start = function (gen, token) {
    this._connToken = token;
    try {
      if (this.transport === 'ws') this._startWS(gen, token);
      else if (this.transport === 'sse' && this._canFetchStream()) this._startFetchSSE(gen, token);
      else this._startEventSource(gen, token);
    } catch (e) {
      this._fail(gen, { reason: 'could not start: ' + (e && e.message), error: e });
    }
  };

  P._sameOrigin = function () {
    var loc = root && root.location;
    if (!loc || !loc.origin || loc.origin === 'null') return false;
    if (this.url === '' || this.url.charAt(0) === '/') return true;
    var m = /^[a-z][a-z0-9+.-]*:\/\/[^\/?#]+/i.exec(this.url);
    return !!m && m[0].toLowerCase() === String(loc.origin).toLowerCase();
  };

  P._canFetchStream = function () {
    return typeof this.fetch === 'function' &&
      typeof root.TextDecoder === 'function' &&
      typeof root.AbortController === 'function' &&
      typeof root.ReadableStream === 'function';
  };

  // A connection attempt or a live connection ended: report and back off.
  P._fail = function (gen, info) {
    if (gen !== this._gen) return;
    var wasOpen = this.state === 'open';
    var c = this._conn;
    this._gen++;
    this._clearTimers();
    this._conn = null;
    this._sent = [];
    this._failSends();
    if (c) { try { c.close(); } catch (e) { /* ignore */ } }
    this._sseRefreshed = false;
    var fatal = !!info.fatal || !this.reconnect;
    var delay = null;
    if (!fatal && info.busy) {
      delay = this._busyDelay();
    } else if (!fatal) {
      delay = backoffDelay(this._attempt, this.backoffBase, this.backoffMax, this.random);
      if (this._serverRetry !== null && info.serverRetry) delay = Math.max(delay, this._serverRetry);
      this._attempt++;
    }
    var ev = {
      code: info.code, reason: info.reason || '', status: info.status,
      wasOpen: wasOpen, willReconnect: !fatal, delay: delay
    };
    if (wasOpen || fatal) this.lastClose = ev;
    // An open connection that ends is a 'close'; an attempt that never
    // opened is an 'error'; giving up for good is always a 'close' too.
    if (wasOpen) {
      this._emit('close', ev);
    } else {
      this._emit('error', ev);
      if (fatal) this._emit('close', ev);
    }
    if (fatal) {
      this._setState('closed');
      return;
    }
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt: this._attempt, delay: delay });
    var self = this;
    this._retryTimer = this.setTimeout(function () {
      self._retryTimer = null;
      if (self.state === 'reconnecting') self._openNow();
    }, delay);
  };

  // What the gateway's close codes (WebSocket close, SSE pushgate.disconnect)
  // mean for reconnecting; see "Why a connection closed" in the header.
  P._closeInfo = function (code, reason) {
    var info = { code: code, reason: reason || '' };
    if (code === 4003) {
      info.fatal = true;                    // the backend said never, or revoked
    } else if (code === 4001 && !this._tokenFn()) {
      info.fatal = true;                    // expired, and nothing can renew it
    } else if (code === 4029) {
      info.busy = true;
    }
    return info;                            // 4000 and others: the usual backoff
  };

  // Delay before retrying after 4029 / HTTP 429: this user already holds as
  // many connections as the gateway allows (--max-connections-per-user), so
  // a retry at the usual pace (the first within 0.5 s) cannot succeed until
  // one of them closes, and each attempt costs the gateway an upgrade. Wait
  // half to all of min(backoffMax, busyBackoffBase * 2^n) ("equal jitter",
  // never near zero): 2.5-5 s, 5-10 s, 10-20 s, then 15-30 s with the
  // defaults, n counting refusals in a row. The count resets once a
  // connection gets anything from the gateway (a 4029 WebSocket opens first,
  // so 'open' cannot be the sign).
  P._busyDelay = function () {
    var ceiling = this.busyBackoffBase * Math.pow(2, Math.min(this._busyAttempt, 30));
    if (ceiling > this.backoffMax) ceiling = Math.max(this.backoffMax, this.busyBackoffBase);
    this._busyAttempt++;
    return Math.floor(ceiling / 2 + this.random() * ceiling / 2);
  };

  P._opened = function (gen) {
    if (gen !== this._gen) return;
    this._attempt = 0;
    this._setState('open');
    this._emit('open', { transport: this.transport, channels: this.currentChannels(), since: this.lastId });
  };

  // Handles one parsed delivery (an envelope). Returns true when delivered.
  P._deliver = function (env, sseId) {
    if (!env || typeof env !== 'object' || typeof env.channel !== 'string') {
      this._emit('error', { reason: 'malformed message', message: env });
      return false;
    }
    // The id is the envelope's only: SSE keeps the last `id:` for events
    // without one, so a live-only message after a history-backed one would
    // take that id and be dropped as its duplicate; and a cluster node's
    // `id:` is a position list, not an id.
    var id = normId(env.id);
    if (id !== null) {
      // SSE: an `id:` that says more than the id is a Redis Cluster node's
      // position list for the stream after this event; a resume sends it
      // back unchanged, as a browser's own reconnect does (Last-Event-ID).
      // It also holds the channels that delivered nothing yet, which our
      // own positions below cannot.
      if (typeof sseId === 'string' && sseId !== '' && sseId !== id) {
        if (SINCE_RE.test(sseId)) this._sseSince = sseId;
      } else {
        this._sseSince = null;
      }
      var prev = this._chanLast[env.channel];
      if (prev !== undefined && cmpId(id, prev) <= 0) return false; // duplicate
      this._chanLast[env.channel] = id;
      if (this.lastId === null || cmpId(id, this.lastId) > 0) this.lastId = id;
    }
    var m = { channel: env.channel, data: env.data };
    if (env.event !== undefined) m.event = env.event;
    if (id !== null) m.id = id;
    this._emit('message', m);
    return true;
  };

  // ---------------------------------------------------------------- WebSocket

  P._startWS = function (gen, token) {
    var WS = this.WebSocket;
    if (!WS) throw new Error('WebSocket is not available');
    var self = this;
    var ws = new WS(this._buildUrl('/ws', token, true));
    var conn = { kind: 'ws', ws: ws, close: function () {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch (e) { /* ignore */ }
    } };
    this._conn = conn;
    ws.onopen = function () {
      if (gen !== self._gen) return;
      self._lastRecv = self.now();
      self._opened(gen);
      // Channels asked for while disconnected, never confirmed, or granted
      // by the backend to the previous connection.
      for (var i = 0; i < self._runtimeOrder.length; i++) {
        var c = self._runtimeOrder[i];
        if (self._runtime[c] === 'granted') self._runtime[c] = 'pending';
        if (self._runtime[c] === 'pending') self._sendCmd({ type: 'subscribe', channel: c });
      }
      self._armPing(gen);
    };
    ws.onmessage = function (ev) {
      if (gen !== self._gen) return;
      self._lastRecv = self.now();
      self._busyAttempt = 0;
      if (self._pongTimer !== null) { self.clearTimeout(self._pongTimer); self._pongTimer = null; }
      self._onWSFrame(ev.data);
    };
    ws.onerror = function () {
      // Browsers follow every error with a close event; report it there.
    };
    ws.onclose = function (ev) {
      if (gen !== self._gen) return;
      self._fail(gen, self._closeInfo(ev.code, ev.reason));
    };
  };

  // record: what to remember as awaiting an answer, when not cmd itself
  // (a refresh is remembered without its token, which events must not show).
  P._sendCmd = function (cmd, record) {
    var c = this._conn;
    if (!c || c.kind !== 'ws') return false;
    try {
      c.ws.send(JSON.stringify(cmd));
    } catch (e) {
      return false;
    }
    if (cmd.type !== 'ping') this._sent.push(record || cmd);
    return true;
  };

  // Keepalive: when nothing arrived for pingInterval ms, send a ping; when
  // nothing at all arrives within pingTimeout after it, the socket is dead
  // (half-open TCP): drop it and reconnect.
  P._armPing = function (gen, wait) {
    var self = this;
    if (this._pingTimer !== null) this.clearTimeout(this._pingTimer);
    this._pingTimer = this.setTimeout(function () {
      self._pingTimer = null;
      if (gen !== self._gen) return;
      var idle = self.now() - self._lastRecv;
      if (idle < self.pingInterval) {
        self._armPing(gen, self.pingInterval - idle);
        return;
      }
      if (self._pongTimer === null) {
        self._sendCmd({ type: 'ping' });
        self._pongTimer = self.setTimeout(function () {
          self._pongTimer = null;
          if (gen !== self._gen) return;
          self._fail(gen, { code: 4000, reason: 'no answer to ping' });
        }, self.pingTimeout);
      }
      self._armPing(gen, self.pingInterval);
    }, wait === undefined ? this.pingInterval : wait);
  };

  // The answer a control frame belongs to: the oldest command awaiting one
  // (the gateway answers commands in order), preferring a channel match
  // (of a command of `type`, when given). A frame without a channel (an
  // error) goes to the oldest command other than a refresh, whose answers
  // are told apart by their codes; to a refresh only when nothing else waits.
  P._takeSent = function (frame, type) {
    var s = this._sent;
    var i;
    if (frame.channel !== undefined) {
      for (i = 0; i < s.length; i++) {
        if (s[i].channel === frame.channel && (!type || s[i].type === type)) return s.splice(i, 1)[0];
      }
      return null;
    }
    for (i = 0; i < s.length; i++) {
      if (s[i].type !== 'refresh') return s.splice(i, 1)[0];
    }
    return s.length ? s.shift() : null;
  };

  // The oldest command of that type awaiting its answer.
  P._takeSentType = function (type) {
    for (var i = 0; i < this._sent.length; i++) {
      if (this._sent[i].type === type) return this._sent.splice(i, 1)[0];
    }
    return null;
  };

  // ------------------------------------------------------------ token refresh

  // Fetches a fresh token for connection `gen` and hands it over: WebSocket
  // by a refresh command, SSE by re-opening the stream with it. One at a time
  // per connection; a new connection starts over.
  P._refresh = function (gen) {
    if (gen !== this._gen || this._refreshing === gen) return;
    this._refreshing = gen;
    if (this._refreshTimer !== null) { this.clearTimeout(this._refreshTimer); this._refreshTimer = null; }
    var self = this;
    this._withToken(gen, function (token) {
      if (gen !== self._gen) return;
      if (!token) {
        self._refreshFailed(gen, 'getToken returned no token');
      } else if (self.transport === 'ws') {
        if (!self._sendCmd({ type: 'refresh', token: token }, { type: 'refresh' })) {
          self._refreshFailed(gen, 'could not send the refresh');
        }
      } else {
        // The old stream is closed only now, once the new token is at hand,
        // so a slow or failing getToken costs nothing while the old one lasts.
        self._sseRefreshed = true;
        self._attempt = 0;
        self._openNow(token);
      }
    }, function (e) {
      self._refreshFailed(gen, 'getToken failed: ' + ((e && e.message) || e), e);
    });
  };

  // getToken threw, rejected or gave nothing: say so, and ask again after 1,
  // 2, 4, 8, then every 15 s while this connection lasts (it ends at exp with
  // 4001 at the latest, and the reconnect asks getToken again).
  P._refreshFailed = function (gen, reason, err) {
    if (gen !== this._gen) return;
    this._refreshing = null;
    this._emit('error', { reason: reason, error: err, refresh: true });
    var delay = Math.min(15000, 1000 * Math.pow(2, Math.min(this._refreshAttempt, 10)));
    this._refreshAttempt++;
    var self = this;
    this._refreshTimer = this.setTimeout(function () {
      self._refreshTimer = null;
      if (gen === self._gen) self._refresh(gen);
    }, delay);
  };

  P._onExpiring = function (f) {
    this._emit('expiring', { exp: typeof f.exp === 'number' ? f.exp : null, transport: this.transport });
    if (this._tokenFn()) this._refresh(this._gen);
  };

  // The gateway dropped a channel on its own: a backend's unsubscribe, or
  // (reason "forbidden") a refreshed token that no longer allows it.
  P._serverUnsubscribed = function (f) {
    if (typeof f.channel === 'string') this._forget(f.channel);
    var ev = { channel: f.channel, server: true };
    if (f.reason !== undefined) ev.reason = f.reason;
    this._emit('unsubscribed', ev);
  };

  P._onWSFrame = function (text) {
    var obj;
    if (typeof text !== 'string') {
      this._emit('error', { reason: 'unexpected binary frame' });
      return;
    }
    try {
      obj = JSON.parse(text);
    } catch (e) {
      this._emit('error', { reason: 'frame is not JSON', frame: text });
      return;
    }
    if (obj && typeof obj === 'object' && typeof obj.type === 'string' &&
        !Object.prototype.hasOwnProperty.call(obj, 'data')) {
      this._onControl(obj);
      return;
    }
    this._deliver(obj);
  };

  P._onControl = function (f) {
    var cmd;
    switch (f.type) {
      case 'subscribed':
        cmd = this._takeSent(f, 'subscribe');
        if (typeof f.channel === 'string' && this._runtime[f.channel] === 'pending') {
          this._runtime[f.channel] = 'confirmed';
        }
        if (cmd) {
          this._emit('subscribed', { channel: f.channel });
        } else {
          // Not an answer: the backend subscribed this connection.
          this._grant(f.channel);
          this._emit('subscribed', { channel: f.channel, server: true });
        }
        break;
      case 'unsubscribed':
        cmd = this._takeSent(f, 'unsubscribe');
        // With a reason (forbidden) it is the gateway's doing even if we
        // had asked for the same.
        if (cmd && f.reason === undefined) this._emit('unsubscribed', { channel: f.channel });
        else this._serverUnsubscribed(f);
        break;
      case 'expiring':
        this._onExpiring(f);
        break;
      case 'refreshed':
        this._takeSentType('refresh');
        this._refreshing = null;
        this._refreshAttempt = 0;
        this._emit('refreshed', { exp: typeof f.exp === 'number' ? f.exp : null, transport: 'ws' });
        break;
      case 'pong':
        this._emit('pong', f);
        break;
      case 'sent':
        if (typeof f.ref === 'string' && this._sends[f.ref]) {
          var ok = this._sends[f.ref];
          delete this._sends[f.ref];
          ok.resolve({ id: f.id, ref: f.ref });
        }
        break;
      case 'recovery':
        this._emit('recovery', f);
        break;
      case 'error':
        if (typeof f.ref === 'string' && this._sends[f.ref]) {
          var bad = this._sends[f.ref];
          delete this._sends[f.ref];
          bad.reject(sendError(f.code || 'error', f.message, f.ref));
          break;
        }
        cmd = f.code === 'bad_token' || f.code === 'wrong_user'
          ? this._takeSentType('refresh') : this._takeSent(f);
        if (cmd && cmd.type === 'refresh') {
          // The gateway keeps the old token; nothing to retry with the same
          // getToken before exp (it closes with 4001 then, and the reconnect
          // asks for a token again).
          this._refreshing = null;
          this._emit('error', { reason: f.message || f.code || 'refresh refused', code: f.code,
                                message: f.message, command: cmd, refresh: true });
          break;
        }
        if (cmd && cmd.type === 'subscribe' && this._runtime[cmd.channel] === 'pending') {
          // Refused: forget it so it is not asked for again.
          delete this._runtime[cmd.channel];
          this._runtimeOrder.splice(this._runtimeOrder.indexOf(cmd.channel), 1);
        }
        this._emit('error', {
          reason: f.message || f.code || 'error', code: f.code, message: f.message,
          command: cmd || undefined, channel: cmd ? cmd.channel : f.channel
        });
        break;
      default:
        this._emit('control', f);
    }
  };

  // ---------------------------------------------------------------- SSE

  P._reopenSSE = function () {
    // New channel list: a fresh stream that resumes from the last id.
    // Deliberate and immediately followed by 'open': no 'close' event.
    this._attempt = 0;
    this._teardown();
    this._openNow();
  };

  P._onSSEEvent = function (name, data, sseId) {
    var obj;
    try {
      obj = JSON.parse(data);
    } catch (e) {
      this._emit('error', { reason: 'event data is not JSON', frame: data });
      return;
    }
    if (name === 'pushgate.recovery') {
      if (!obj || typeof obj !== 'object') obj = { type: 'recovery', complete: false };
      this._emit('recovery', obj);
      return;
    }
    if (SSE_CONTROL.indexOf(name) >= 0) {
      this._onSSEControl(name, obj && typeof obj === 'object' ? obj : {});
      return;
    }
    this._deliver(obj, sseId);
  };

  P._onSSEControl = function (name, obj) {
    if (name === 'pushgate.expiring') {
      this._onExpiring(obj);
    } else if (name === 'pushgate.disconnect') {
      // The stream ends next. Close it now, before EventSource can reconnect
      // on its own with the old token, and decide by the code.
      var code = typeof obj.code === 'number' ? obj.code : 4000;
      this._fail(this._gen, this._closeInfo(code, typeof obj.reason === 'string' ? obj.reason : ''));
    } else if (name === 'pushgate.subscribed') {
      this._grant(obj.channel);
      this._emit('subscribed', { channel: obj.channel, server: true });
    } else if (name === 'pushgate.unsubscribed') {
      this._serverUnsubscribed(obj);
    }
  };

  // SSE can only ask for a new channel by re-opening the stream, and the
  // gateway refuses the whole stream (403) when one channel is not allowed.
  // When a stream that carried not-yet-confirmed runtime channels is refused,
  // those channels are dropped (reported as 'error') and the stream re-opens
  // without them. Returns true when it did so.
  P._dropPendingSSE = function (gen, status) {
    if (gen !== this._gen) return false;
    var dropped = [];
    for (var i = this._runtimeOrder.length - 1; i >= 0; i--) {
      var c = this._runtimeOrder[i];
      if (this._runtime[c] === 'pending' || this._runtime[c] === 'granted') {
        delete this._runtime[c];
        this._runtimeOrder.splice(i, 1);
        dropped.unshift(c);
      }
    }
    if (!dropped.length) return false;
    for (var j = 0; j < dropped.length; j++) {
      this._emit('error', { reason: 'subscribe refused', channel: dropped[j], status: status,
                            command: { type: 'subscribe', channel: dropped[j] } });
    }
    this._teardown();
    this._openNow();
    return true;
  };

  P._sseOpened = function (gen) {
    if (gen !== this._gen) return;
    var confirmed = [];
    for (var i = 0; i < this._runtimeOrder.length; i++) {
      var c = this._runtimeOrder[i];
      if (this._runtime[c] === 'pending') { this._runtime[c] = 'confirmed'; confirmed.push(c); }
      // granted ones were announced when the backend added them
      else if (this._runtime[c] === 'granted') this._runtime[c] = 'confirmed';
    }
    this._busyAttempt = 0;
    var refreshed = this._sseRefreshed;
    this._sseRefreshed = false;
    this._opened(gen);
    for (var j = 0; j < confirmed.length; j++) this._emit('subscribed', { channel: confirmed[j] });
    if (refreshed) {
      this._refreshAttempt = 0;
      this._emit('refreshed', { exp: tokenExp(this._connToken), transport: this.transport });
    }
  };

  P._startEventSource = function (gen, token) {
    var ES = this.EventSource;
    if (!ES) throw new Error('EventSource is not available');
    var self = this;
    var es = new ES(this._buildUrl('/sse', token, true));
    var names = ['message'].concat(SSE_CONTROL, this.events);
    var listeners = {};
    function add(name) {
      if (listeners[name]) return;
      listeners[name] = function (ev) {
        if (gen !== self._gen) return;
        self._onSSEEvent(name, ev.data, ev.lastEventId);
      };
      es.addEventListener(name, listeners[name]);
    }
    for (var i = 0; i < names.length; i++) add(names[i]);
    this._conn = {
      kind: 'eventsource', es: es, addName: add,
      close: function () { es.onopen = es.onerror = null; es.close(); }
    };
    es.onopen = function () {
      if (gen !== self._gen) return;
      if (self.state === 'open') return;
      self._sseOpened(gen);
    };
    es.onerror = function () {
      if (gen !== self._gen) return;
      if (es.readyState === 2 /* CLOSED */) {
        // The browser gave up (HTTP error status or wrong content type):
        // reconnect ourselves with since=<lastId>. EventSource hides the
        // status, so a refusal right after adding channels is taken as
        // theirs.
        if (self.state !== 'open' && self._dropPendingSSE(gen)) return;
        self._fail(gen, { reason: 'event stream failed' });
      } else if (self.state === 'open') {
        // The browser reconnects by itself with Last-Event-ID.
        self._setState('reconnecting');
        self._emit('close', { reason: 'event stream interrupted', willReconnect: true, wasOpen: true });
      } else {
        self._emit('error', { reason: 'event stream not reachable', willReconnect: true, wasOpen: false });
      }
    };
  };

  P._startFetchSSE = function (gen, token) {
    var self = this;
    var ctrl = new root.AbortController();
    // Accept is CORS-safelisted; Authorization is not, so a cross-origin page
    // sends the token in the query instead of triggering a preflight.
    var headers = { Accept: 'text/event-stream' };
    var inHeader = token && this._sameOrigin();
    if (inHeader) headers.Authorization = 'Bearer ' + token;
    this._conn = { kind: 'fetch', close: function () { ctrl.abort(); } };
    var parser = new SSEParser(function (ev) {
      if (gen !== self._gen) return;
      self._onSSEEvent(ev.event, ev.data, ev.id);
    }, function (ms) { self._serverRetry = ms; });

    function armIdle() {
      if (self._idleTimer !== null) self.clearTimeout(self._idleTimer);
      self._idleTimer = self.setTimeout(function () {
        self._idleTimer = null;
        self._fail(gen, { code: 4000, reason: 'event stream silent' });
      }, self.sseIdleTimeout);
    }

    this.fetch(this._buildUrl('/sse', inHeader ? null : token, true), {
      method: 'GET', headers: headers, cache: 'no-store', signal: ctrl.signal,
      credentials: 'same-origin'
    }).then(function (res) {
      if (gen !== self._gen) return;
      var ct = (res.headers && res.headers.get('content-type')) || '';
      if (res.status !== 200 || ct.toLowerCase().indexOf('text/event-stream') !== 0) {
        var st = res.status;
        if (st === 403 && self._dropPendingSSE(gen, st)) return;
        // Refused for good (bad token, forbidden channel, bad request) unless
        // a token function may produce a better token next time; if it then
        // gives the same one, _openNow stops there.
        var refused = st >= 400 && st < 500 && st !== 408 && st !== 429;
        var fatal = refused && !self._tokenFn();
        if (refused && !fatal) self._refused = { token: token, status: st };
        try { ctrl.abort(); } catch (e) { /* ignore */ }
        self._fail(gen, { status: st, reason: 'HTTP ' + st, fatal: fatal, busy: st === 429 });
        return;
      }
      if (!res.body || !res.body.getReader) {
        self._fail(gen, { reason: 'streaming body not supported', fatal: true });
        return;
      }
      var reader = res.body.getReader();
      var dec = new root.TextDecoder('utf-8');
      self._sseOpened(gen);
      armIdle();
      function pump() {
        return reader.read().then(function (r) {
          if (gen !== self._gen) { try { reader.cancel(); } catch (e) { /* ignore */ } return; }
          if (r.done) {
            self._fail(gen, { reason: 'event stream ended', serverRetry: true });
            return;
          }
          armIdle();
          parser.push(dec.decode(r.value, { stream: true }));
          return pump();
        });
      }
      return pump();
    }).catch(function (e) {
      if (gen !== self._gen) return;
      self._fail(gen, { reason: 'network error: ' + (e && e.message), error: e });
    });
  };

  return PushGate;
});
