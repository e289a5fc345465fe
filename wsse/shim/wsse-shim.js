/* wsse shim: replaces window.WebSocket with a faithful stand-in.
 *
 * wsse injects this file inline into HTML documents, before any script of the
 * page, so the page's code only ever sees this constructor.  Each socket is
 * carried by a transport:
 *   - the native transport: the browser's own WebSocket, tried first;
 *   - the fallback transport: when the native socket cannot open (a gateway
 *     blocks WebSocket), the page's socket travels over one event stream
 *     from wsse (Server-Sent Events format, read with fetch) and an ordered
 *     channel of POSTs to it, shared by all fallback sockets of the page.
 * The names and formats used here are specified in wsse/_protocol.py and in
 * the README's protocol section.
 *
 * Written without crypto.randomUUID or other secure-context-only APIs: pages
 * served over plain http on a non-localhost name must work.
 */
(function () {
  "use strict";

  var NativeWebSocket = window.WebSocket;
  if (typeof NativeWebSocket !== "function" || window.__wsse) {
    return;
  }

  var script = document.currentScript;
  var config = new URLSearchParams((script && script.getAttribute("data-wsse")) || "");
  var pagePath = config.get("path") || location.pathname;
  var endpoints = new URL(config.get("base") || "__wsse/", location.href).href;
  var probeMs = Number(config.get("probe")) || 3000;
  var serverForces = config.get("force") === "1";

  /* A gateway in front may have added a prefix to every path (/proxy/8080/):
   * it is what location.pathname has in front of the path wsse saw. */
  var prefix = "";
  if (location.pathname.length > pagePath.length &&
      location.pathname.slice(-pagePath.length) === pagePath) {
    prefix = location.pathname.slice(0, -pagePath.length).replace(/\/$/, "");
  }

  var STATE_NAMES = ["CONNECTING", "OPEN", "CLOSING", "CLOSED"];
  var CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;

  /* ---- When to use the fallback ----------------------------------------- */

  /* Declared (and assigned) before readSwitches() below runs: a var used
   * before its assignment is undefined, and ?wsse=native would clear nothing. */
  var FORCE_KEY = "wsse:force";
  var VERDICT_KEY = "wsse:verdict";
  var POLLING_KEY = "wsse:poll";
  var REPROBE_MS = 10 * 60 * 1000;
  var pageVerdictAt = 0;

  function storage() {
    try {
      return window.sessionStorage;
    } catch (e) {
      return null; /* storage disabled: nothing is remembered */
    }
  }

  var askedForFallback = false;

  (function readSwitches() {
    var asked = new URLSearchParams(location.search).get("wsse");
    var store = storage();
    askedForFallback = asked === "fallback";
    if (!store) {
      return;
    }
    if (asked === "fallback") {
      store.setItem(FORCE_KEY, "1");
    } else if (asked === "native") {
      store.removeItem(FORCE_KEY);
      store.removeItem(VERDICT_KEY);
      store.removeItem(POLLING_KEY);
    }
  })();

  function forced() {
    var store = storage();
    return serverForces || askedForFallback ||
      (store !== null && store.getItem(FORCE_KEY) === "1") ||
      /(?:^|;\s*)wsse=fallback(?:;|$)/.test(document.cookie);
  }

  function rememberedFailure() {
    var store = storage();
    var at = store && Number(store.getItem(VERDICT_KEY));
    return Boolean(at) && Date.now() - at < REPROBE_MS;
  }

  /* A native socket failed and a fallback socket then opened, or an open
   * native socket was cut (1006: no close frame came): WebSocket is blocked
   * or torn down on the way, for this page and, for a while, this tab.  The
   * fallback resumes across cuts; the app's reconnect takes it. */
  function provenBlocked() {
    pageVerdictAt = Date.now();
    var store = storage();
    if (store) {
      store.setItem(VERDICT_KEY, String(pageVerdictAt));
    }
  }

  function fallbackFirst() {
    return forced() || Date.now() - pageVerdictAt < REPROBE_MS || rememberedFailure();
  }

  /* ---- Errors as a native socket throws them ----------------------------- */

  function domError(message, name) {
    return new DOMException(message, name);
  }

  var TOKEN = /^[!#$%&'*+\-.^_\x60|~0-9A-Za-z]+$/;

  /* WebIDL's DOMString conversion: String(), except that a Symbol throws. */
  function toDOMString(value, what) {
    if (typeof value === "symbol") {
      throw new TypeError("Failed to construct 'WebSocket': Cannot convert a Symbol value to a string (" + what + ").");
    }
    return String(value);
  }

  function parseURL(url) {
    var parsed;
    url = toDOMString(url, "url");
    try {
      parsed = new URL(url, document.baseURI);
    } catch (e) {
      throw domError("Failed to construct 'WebSocket': The URL '" + url + "' is invalid.", "SyntaxError");
    }
    if (parsed.protocol === "http:") {
      parsed.protocol = "ws:";
    } else if (parsed.protocol === "https:") {
      parsed.protocol = "wss:";
    }
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw domError("Failed to construct 'WebSocket': The URL's scheme must be either 'http', 'https', 'ws', or 'wss'. '" +
        parsed.protocol.slice(0, -1) + "' is not allowed.", "SyntaxError");
    }
    /* Any '#' makes a fragment, an empty one too ("ws://h/p#"), which
     * URL.hash reports as "": the serialized URL keeps it. */
    if (parsed.hash || parsed.href.indexOf("#") >= 0) {
      throw domError("Failed to construct 'WebSocket': The URL contains a fragment identifier ('" +
        parsed.hash.slice(1) + "'). Fragment identifiers are not allowed in WebSocket URLs.", "SyntaxError");
    }
    return parsed;
  }

  /* The argument is a WebIDL (DOMString or sequence<DOMString>): only an
   * object with an iterator is a sequence; anything else (null, 5, true, an
   * object without one) is converted to one string, as natively: null
   * offers the subprotocol "null". */
  function parseProtocols(protocols) {
    var list;
    if (protocols === undefined) {
      list = [];
    } else if ((typeof protocols === "object" && protocols !== null) || typeof protocols === "function") {
      var iterator = protocols[Symbol.iterator];
      if (iterator === undefined || iterator === null) {
        list = [toDOMString(protocols, "protocols")];
      } else if (typeof iterator !== "function") {
        throw new TypeError("Failed to construct 'WebSocket': The provided value cannot be converted to a sequence.");
      } else {
        list = Array.from(protocols, function (item) { return toDOMString(item, "protocols"); });
      }
    } else {
      list = [toDOMString(protocols, "protocols")];
    }
    var seen = {};
    list.forEach(function (protocol) {
      if (!TOKEN.test(protocol)) {
        throw domError("Failed to construct 'WebSocket': The subprotocol '" + protocol + "' is invalid.", "SyntaxError");
      }
      if (seen[protocol]) {
        throw domError("Failed to construct 'WebSocket': The subprotocol '" + protocol + "' is duplicated.", "SyntaxError");
      }
      seen[protocol] = true;
    });
    return list;
  }

  var encoder = new TextEncoder();

  /* WebIDL [Clamp] unsigned short, as the native close() converts its code. */
  function clampShort(value) {
    var x = Math.min(Math.max(Number(value) || 0, 0), 65535);
    var floor = Math.floor(x);
    var rest = x - floor;
    return rest < 0.5 ? floor : rest > 0.5 ? floor + 1 : (floor % 2 === 0 ? floor : floor + 1);
  }

  function checkClose(code, reason) {
    if (code !== undefined) {
      code = clampShort(code);
      if (code !== 1000 && (code < 3000 || code > 4999)) {
        throw domError("Failed to execute 'close' on 'WebSocket': The close code must be either 1000, or between 3000 and 4999. " +
          code + " is neither.", "InvalidAccessError");
      }
    }
    var reasonBytes = reason === undefined ? new Uint8Array(0) : encoder.encode(String(reason));
    if (reasonBytes.length > 123) {
      throw domError("Failed to execute 'close' on 'WebSocket': The close reason must not be greater than 123 UTF-8 bytes.", "SyntaxError");
    }
    return { code: code, reason: reasonBytes };
  }

  /* The path wsse serves a socket at, or null for a socket wsse cannot carry
   * (another host, or outside the gateway's prefix for this app). */
  function bridgedPath(parsed) {
    if (parsed.host !== location.host) {
      return null;
    }
    var path = parsed.pathname + parsed.search;
    if (prefix) {
      if (path.indexOf(prefix + "/") !== 0) {
        return null;
      }
      path = path.slice(prefix.length);
    }
    return path;
  }

  /* The URL the browser's own socket dials.  A query goes in the path, under
   * wsse's endpoints: some gateways drop the query of an upgrade request. */
  function nativeURL(parsed, path) {
    if (path === null || !parsed.search) {
      return parsed.href;
    }
    var carried = btoa(path).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    var url = new URL("ws/" + carried, endpoints);
    url.protocol = parsed.protocol;
    return url.href;
  }

  /* ---- The native transport ---------------------------------------------- */

  /* The browser's own socket.  Until it opens it is a probe: if it fails
   * (or stays CONNECTING past the probe time) and wsse can carry the socket,
   * its events are dropped and the socket moves to the fallback. */
  function NativeTransport(owner, state, url, protocols, path) {
    var transport = this;
    var ws;
    this.kind = "native";
    this.ws = null;
    this.opened = false;
    try {
      ws = protocols === undefined ? new NativeWebSocket(url) : new NativeWebSocket(url, protocols);
    } catch (error) {
      if (path === null) {
        throw error;
      }
      transport.abandoned = true;
      setTimeout(function () { switchToFallback(owner, state, path); }, 0);
      return;
    }
    this.ws = ws;
    ws.binaryType = state.binaryType;
    var timer = path === null ? null : setTimeout(function () {
      giveUp();
    }, probeMs);

    function giveUp() {
      if (transport.opened || transport.abandoned) {
        return;
      }
      transport.abandoned = true;
      clearTimeout(timer);
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close();
      } catch (e) { /* already failing */ }
      switchToFallback(owner, state, path);
    }

    ws.onopen = function () {
      clearTimeout(timer);
      transport.opened = true;
      owner.dispatchEvent(new Event("open"));
    };
    ws.onmessage = function (event) {
      owner.dispatchEvent(new MessageEvent("message", {
        data: event.data,
        origin: event.origin,
        lastEventId: event.lastEventId
      }));
    };
    ws.onerror = function () {
      if (!transport.opened && path !== null) {
        giveUp();
        return;
      }
      owner.dispatchEvent(new Event("error"));
    };
    ws.onclose = function (event) {
      if (!transport.opened && path !== null) {
        giveUp();
        return;
      }
      clearTimeout(timer);
      if (event.code === 1006 && path !== null && !state.closeRequested) {
        provenBlocked();
      }
      owner.dispatchEvent(new CloseEvent("close", {
        code: event.code,
        reason: event.reason,
        wasClean: event.wasClean
      }));
    };
  }
  NativeTransport.prototype = {
    get url() { return this.ws ? this.ws.url : ""; },
    get readyState() { return this.ws && !this.abandoned ? this.ws.readyState : CONNECTING; },
    get bufferedAmount() { return this.ws ? this.ws.bufferedAmount : 0; },
    get protocol() { return this.ws ? this.ws.protocol : ""; },
    get extensions() { return this.ws ? this.ws.extensions : ""; },
    setBinaryType: function (value) {
      if (this.ws) {
        this.ws.binaryType = value;
      }
    },
    send: function (data) {
      if (!this.ws || this.abandoned) {
        throw domError("Failed to execute 'send' on 'WebSocket': Still in CONNECTING state.", "InvalidStateError");
      }
      this.ws.send(data);
    },
    close: function (code, reason) {
      if (!this.ws || this.abandoned) {
        return; /* the fallback took over: close() went to it */
      }
      if (code === undefined) {
        this.ws.close();
      } else if (reason === undefined) {
        this.ws.close(code);
      } else {
        this.ws.close(code, reason);
      }
    }
  };

  function switchToFallback(owner, state, path) {
    if (state.closeRequested) {
      /* close() was called while the probe was failing: fail as native would */
      state.transport = new ClosedTransport(state.url, "native");
      owner.dispatchEvent(new Event("error"));
      owner.dispatchEvent(new CloseEvent("close", { code: 1006, reason: "", wasClean: false }));
      return;
    }
    state.transport = new FallbackTransport(owner, state, path, true);
  }

  function ClosedTransport(url, kind) {
    this.kind = kind;
    this.url = url;
    this.readyState = CLOSED;
    this.bufferedAmount = 0;
    this.protocol = "";
    this.extensions = "";
  }
  ClosedTransport.prototype = {
    setBinaryType: function () {},
    send: function () {},
    close: function () {}
  };

  /* ---- Delivering the fallback's events to the page ----------------------- */

  /* A browser fires each WebSocket event in a task of its own, so promise
   * callbacks run between two events: an app may wait for "open" with a
   * promise and only then listen for messages.  The event stream brings
   * many events in one chunk (a poll's answer, a resumed stream's replay,
   * an app that speaks as soon as it opens), so they are queued here and
   * delivered one per task, in the order they arrived, for every socket of
   * the page together.  A MessageChannel gives a task without the 4 ms that
   * nested timers are clamped to. */
  var deliveries = [];
  var deliveryQueued = false;
  var deliveryChannel = new MessageChannel();

  function scheduleDelivery() {
    if (!deliveryQueued) {
      deliveryQueued = true;
      deliveryChannel.port2.postMessage(null);
    }
  }

  deliveryChannel.port1.onmessage = function () {
    deliveryQueued = false;
    var next = deliveries.shift();
    if (deliveries.length) {
      scheduleDelivery(); /* before running it: a throw does not stall the rest */
    }
    if (next) {
      next();
    }
  };

  function deliver(task) {
    deliveries.push(task);
    scheduleDelivery();
  }

  /* ---- The fallback transport -------------------------------------------- */

  var FRAME_OPEN = 1, FRAME_TEXT = 2, FRAME_BINARY = 3, FRAME_CLOSE = 4;
  var FRAME_TEXT_PART = 5, FRAME_BINARY_PART = 6, FRAME_ABORT = 7;
  /* Gateways limit request bodies (nginx: 1 MiB by default): a message goes
   * in parts of at most PART_BYTES, and a POST carries at most BATCH_BYTES. */
  var PART_BYTES = 240 * 1024;
  var BATCH_BYTES = 256 * 1024;

  function FallbackTransport(owner, state, path, afterProbe) {
    this.kind = "fallback";
    this.owner = owner;
    this.state = state;
    this.url = state.url;
    this.origin = state.origin;
    this.readyState = CONNECTING;
    this.bufferedAmount = 0;
    this.protocol = "";
    this.extensions = "";
    this.afterProbe = afterProbe;
    this.serverOpened = false;
    this.serverClosed = false;
    this.session = currentSession();
    this.number = this.session.add(this);
    var open = encoder.encode(JSON.stringify({ url: path, protocols: state.protocols }));
    if (open.length > PART_BYTES) {
      var transport = this;
      setTimeout(function () { transport.finish(1006, "", false); }, 0);
      return;
    }
    this.openFrame = open;
    this.reopened = false;
    this.session.enqueue(FRAME_OPEN, this, open, 0);
  }
  FallbackTransport.prototype = {
    setBinaryType: function () { /* read at each message's delivery */ },

    /* Its session turned out gone before the socket opened (a restarted wsse
     * answered 410): whatever the app saw of it was dropped with the session,
     * so it opens once more, on a new session, as a reconnecting app would. */
    reopen: function () {
      this.reopened = true;
      delete this.session.sockets[this.number];
      this.session = currentSession();
      this.number = this.session.add(this);
      this.session.enqueue(FRAME_OPEN, this, this.openFrame, 0);
    },

    send: function (data) {
      if (this.readyState === CONNECTING) {
        throw domError("Failed to execute 'send' on 'WebSocket': Still in CONNECTING state.", "InvalidStateError");
      }
      var kind, payload, size;
      if (typeof data === "string") {
        kind = FRAME_TEXT;
        payload = encoder.encode(data);
        size = payload.length;
      } else if (tagOf(data) === "ArrayBuffer") {
        kind = FRAME_BINARY;
        payload = new Uint8Array(ArrayBuffer.prototype.slice.call(data, 0));
        size = payload.length;
      } else if (ArrayBuffer.isView(data)) {
        kind = FRAME_BINARY;
        payload = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
        size = payload.length;
      } else if (tagOf(data) === "Blob" || tagOf(data) === "File") {
        kind = FRAME_BINARY;
        payload = data; /* read when its turn comes, so order is kept */
        size = data.size;
      } else {
        kind = FRAME_TEXT;
        payload = encoder.encode(String(data));
        size = payload.length;
      }
      this.bufferedAmount += size;
      if (this.readyState !== OPEN) {
        return; /* as native: counted, never sent */
      }
      var partKind = kind === FRAME_TEXT ? FRAME_TEXT_PART : FRAME_BINARY_PART;
      for (var start = 0; size - start > PART_BYTES; start += PART_BYTES) {
        this.session.enqueue(partKind, this, payload.slice(start, start + PART_BYTES), PART_BYTES);
      }
      this.session.enqueue(kind, this, start ? payload.slice(start) : payload, size - start);
    },

    close: function (code, reason) {
      var checked = checkClose(code, reason);
      if (this.readyState === CLOSING || this.readyState === CLOSED) {
        return;
      }
      if (this.readyState === CONNECTING) {
        /* As native: the connection fails, whatever the app does meanwhile. */
        this.readyState = CLOSING;
        this.aborted = true;
        this.session.enqueue(FRAME_ABORT, this, new Uint8Array(0), 0);
        return;
      }
      var payload = new Uint8Array(0);
      if (checked.code !== undefined) {
        payload = new Uint8Array(2 + checked.reason.length);
        payload[0] = checked.code >> 8;
        payload[1] = checked.code & 0xff;
        payload.set(checked.reason, 2);
      }
      this.readyState = CLOSING;
      this.session.enqueue(FRAME_CLOSE, this, payload, 0);
    },

    /* From the session. */

    sent: function (size) {
      this.bufferedAmount -= size;
    },

    /* An event for this socket came from wsse.  What the session must know
     * is noted now; what the page sees (readyState included) changes when
     * the event is delivered, in its own task, after those before it. */
    arrived: function (name, data) {
      var transport = this;
      if (name === "open") {
        this.serverOpened = true;
      } else if (name === "close") {
        this.serverClosed = true;
      }
      deliver(function () { transport.handle(name, data); });
    },

    /* The socket fails (1006) once what arrived before is delivered. */
    failSoon: function () {
      var transport = this;
      deliver(function () { transport.finish(1006, "", false); });
    },

    handle: function (name, data) {
      var owner = this.owner;
      if (name === "open") {
        if (this.readyState !== CONNECTING) {
          return; /* aborted meanwhile: its close follows */
        }
        this.readyState = OPEN;
        this.protocol = data.protocol;
        this.extensions = data.extensions;
        if (this.afterProbe) {
          provenBlocked();
        }
        owner.dispatchEvent(new Event("open"));
      } else if (name === "text" || name === "binary") {
        if (this.readyState !== OPEN) {
          return; /* as natively: after close() (CLOSING), a message is dropped */
        }
        var payload = data.d;
        if (name === "binary") {
          var bytes = base64Bytes(data.d);
          payload = this.state.binaryType === "arraybuffer" ? bytes.buffer : new Blob([bytes]);
        }
        owner.dispatchEvent(new MessageEvent("message", { data: payload, origin: this.origin }));
      } else if (name === "close") {
        if (this.aborted) {
          this.finish(1006, "", false);
        } else {
          this.finish(data.code, data.reason, data.clean);
        }
      }
    },

    finish: function (code, reason, clean) {
      if (this.readyState === CLOSED) {
        return;
      }
      this.readyState = CLOSED;
      this.session.remove(this);
      if (!clean) {
        this.owner.dispatchEvent(new Event("error"));
      }
      this.owner.dispatchEvent(new CloseEvent("close", { code: code, reason: reason, wasClean: clean }));
    }
  };

  /* Type tests that hold for objects from other frames too. */
  function tagOf(value) {
    return Object.prototype.toString.call(value).slice(8, -1);
  }

  function base64Bytes(text) {
    var raw = atob(text);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    return bytes;
  }

  /* ---- The page session: one event stream, one POST channel -------------- */

  var SESSION_HEADER = "X-WSSE-Session";
  var ACK_HEADER = "X-WSSE-Ack";
  var FRAMES_TYPE = "application/x-wsse-frames";
  var SESSION_GONE = 410;
  var ACK_EVERY = 64;
  /* ...or every 512 KiB of events: the server stops reading the app's sockets
   * at 4 MiB unacknowledged, so big messages must not wait for 64 events. */
  var ACK_BYTES = 512 * 1024;
  var ACK_AFTER_MS = 1000;
  var IDLE_END_MS = 5000;
  /* An event stream must show its first bytes (its preamble) within this
   * time, or the page switches to long-polls. */
  var PREAMBLE_MS = 2000;

  function rememberPolling() {
    var store = storage();
    if (store) {
      store.setItem(POLLING_KEY, String(Date.now()));
    }
  }

  function rememberedPolling() {
    var store = storage();
    var at = store && Number(store.getItem(POLLING_KEY));
    return Boolean(at) && Date.now() - at < REPROBE_MS;
  }

  var session = null;

  function currentSession() {
    if (session === null || session.ended) {
      session = new Session();
    }
    return session;
  }

  function Session() {
    this.id = null;
    this.ended = false;
    this.sockets = {};
    this.count = 0;
    this.nextNumber = 1;
    this.lastEventId = 0;
    this.ackedEventId = 0;
    this.unackedBytes = 0;
    this.queue = [];
    this.nextSeq = 0;
    this.posting = false;
    this.inFlight = null; /* the frames of the POST in flight */
    this.acking = false;
    this.retryMs = 0;
    this.streamRetryMs = 0;
    this.watchdogMs = 15000;
    this.graceMs = 30000;
    this.downSince = Date.now();
    this.postFailingSince = null;
    this.lastBytesAt = 0;
    this.controller = null;
    this.polling = rememberedPolling();
    /* Polling since a stream showed no headers in time, not yet shown
     * to be needed; and, once a poll was as slow, streams are given time. */
    this.pollOnTrial = false;
    this.patient = false;
    this.started = false;
    this.ackTimer = null;
    this.idleTimer = null;
    this.connect();
  }
  Session.prototype = {
    add: function (transport) {
      var number = this.nextNumber++;
      this.sockets[number] = transport;
      this.count++;
      clearTimeout(this.idleTimer);
      return number;
    },

    remove: function (transport) {
      if (this.sockets[transport.number] === transport) {
        delete this.sockets[transport.number];
        this.count--;
      }
      if (this.count === 0) {
        /* No socket left: let the stream's connection go after a while. */
        var session = this;
        clearTimeout(this.idleTimer);
        this.idleTimer = setTimeout(function () {
          if (session.count === 0) {
            session.end();
          }
        }, IDLE_END_MS);
      }
    },

    /* The event stream. */

    connect: function () {
      var session = this;
      var headers = { "Accept": "text/event-stream" };
      if (this.id !== null) {
        headers[SESSION_HEADER] = this.id;
        headers["Last-Event-ID"] = String(this.lastEventId);
      }
      var controller = new AbortController();
      this.controller = controller;
      this.lastBytesAt = Date.now();
      var polling = this.polling;
      var onTrial = polling && this.pollOnTrial;
      var sentAt = Date.now();
      var answered = false;
      /* Whether the response's headers arrived (lastBytesAt was reset then). */
      var headersIn = false;
      var watchdog = setInterval(function () {
        if (Date.now() - session.lastBytesAt > session.watchdogMs) {
          controller.abort(); /* a stream gone silent, or a poll never answered: lost */
        }
        if (polling || session.started || Date.now() - session.lastBytesAt <= PREAMBLE_MS) {
          return;
        }
        if (headersIn) {
          /* Headers but not even the preamble: a gateway holds the stream
           * back (buffering, compressing).  Long-polls get through it, for
           * this page and, for a while, the tab. */
          session.polling = true;
          rememberPolling();
        } else if (!session.patient) {
          /* Not even the headers: a gateway that holds the stream back may
           * hold its headers too (nginx compressing it does), or the server
           * or the network is slow.  A poll tells which (see pollOnTrial);
           * nothing is remembered for the tab until it has. */
          session.polling = true;
          session.pollOnTrial = true;
        } else {
          return; /* slow everywhere: the ordinary watchdog judges */
        }
        answered = true; /* no back-off: poll at once */
        controller.abort();
      }, 250);
      this.started = false;
      fetch(endpoints + (polling ? "poll" : "events"), {
        headers: headers,
        cache: "no-store",
        credentials: "same-origin",
        signal: controller.signal
      }).then(function (response) {
        if (response.status === SESSION_GONE) {
          session.fail(true);
          return null;
        }
        var type = response.headers.get("Content-Type") || "";
        if (!response.ok || !response.body || type.indexOf("text/event-stream") !== 0) {
          throw new Error("events answered " + response.status + " " + type);
        }
        session.downSince = null;
        session.lastBytesAt = Date.now();
        headersIn = true;
        if (onTrial && session.pollOnTrial) {
          session.pollOnTrial = false;
          if (Date.now() - sentAt <= PREAMBLE_MS) {
            /* The poll was answered at once where the stream showed nothing:
             * the stream is held back on the way. */
            rememberPolling();
          } else {
            /* The poll was as slow: the server or the network is, and a
             * stream is given the time it takes (the next one is a stream). */
            session.polling = false;
            session.patient = true;
          }
        }
        return session.read(response.body.getReader()).then(function () {
          answered = polling;
        });
      }).catch(function () {
        /* a dropped stream or a failed poll: resumed below */
      }).then(function () {
        clearInterval(watchdog);
        if (session.downSince === null) {
          session.downSince = Date.now();
        }
        if (!session.ended && Date.now() - session.downSince > session.graceMs) {
          /* wsse has been out of reach past the grace period: it has let the
           * app's sockets go, so the page's sockets fail too. */
          session.fail();
        }
        if (session.ended) {
          return;
        }
        /* The next poll goes at once; a stream that dropped comes back after
         * a pause that grows while it keeps failing. */
        session.streamRetryMs = answered ? 0 : Math.min(Math.max(session.streamRetryMs * 2, 100), 5000);
        setTimeout(function () {
          if (!session.ended) {
            session.connect();
          }
        }, session.streamRetryMs);
      });
    },

    read: function (reader) {
      var session = this;
      var decoder = new TextDecoder();
      var buffer = "";
      var event = { id: null, name: "message", data: null };
      function pump(result) {
        if (result.done || session.ended) {
          return null;
        }
        session.lastBytesAt = Date.now();
        session.started = true;
        /* A line's end is looked for only in what just arrived: a long line
         * (a 16 MiB message) is not scanned again at each chunk. */
        var scanFrom = buffer.length;
        buffer += decoder.decode(result.value, { stream: true });
        var start = 0;
        var end;
        while ((end = buffer.indexOf("\n", Math.max(start, scanFrom))) >= 0) {
          var line = buffer.slice(start, end);
          start = end + 1;
          if (line === "") {
            if (event.id !== null) {
              session.dispatch(Number(event.id), event.name, event.data || "");
            }
            event = { id: null, name: "message", data: null };
          } else if (line.charAt(0) !== ":") {
            var colon = line.indexOf(": ");
            var field = line.slice(0, colon);
            var value = line.slice(colon + 2);
            if (field === "id") {
              event.id = value;
            } else if (field === "event") {
              event.name = value;
            } else if (field === "data") {
              /* a line feed in a text message continues it on a new data line */
              event.data = event.data === null ? value : event.data + "\n" + value;
            }
          }
        }
        buffer = buffer.slice(start);
        return reader.read().then(pump);
      }
      return reader.read().then(pump);
    },

    dispatch: function (id, name, data) {
      if (id <= this.lastEventId) {
        return; /* replayed, and already handled */
      }
      this.lastEventId = id;
      this.unackedBytes += data.length;
      this.streamRetryMs = 0;
      var fields;
      if (name === "text" || name === "binary") {
        /* "<socket> <message>": the message as it is, or in base64 */
        var space = data.indexOf(" ");
        fields = { s: Number(data.slice(0, space)), d: data.slice(space + 1) };
      } else {
        fields = JSON.parse(data);
      }
      if (name === "sent") {
        this.accepted(fields.seq);
      } else if (name === "session") {
        this.id = fields.session;
        this.watchdogMs = Math.max(3 * fields.heartbeat, 3000);
        this.graceMs = fields.grace;
      } else {
        var transport = this.sockets[fields.s];
        if (transport) {
          transport.arrived(name, fields);
        }
      }
      this.acknowledgeSoon();
      this.post();
    },

    acknowledgeSoon: function () {
      var session = this;
      if (this.ackTimer === null) {
        this.ackTimer = setTimeout(function () {
          session.ackTimer = null;
          session.post();
        }, ACK_AFTER_MS);
      }
    },

    /* The POST channel: frames in order, one request in flight, each frame
     * numbered so the server applies a retried one only once. */

    enqueue: function (kind, transport, payload, size) {
      this.queue.push({
        seq: this.nextSeq++,
        kind: kind,
        transport: transport,
        payload: payload,
        size: size
      });
      this.post();
    },

    /* The server holds every frame up to seq: they no longer count as buffered. */
    accepted: function (seq) {
      for (var i = 0; i < this.queue.length && this.queue[i].seq <= seq; i++) {
        var frame = this.queue[i];
        if (!frame.accepted) {
          frame.accepted = true;
          frame.transport.sent(frame.size);
        }
      }
    },

    ackDue: function () {
      var unacked = this.lastEventId - this.ackedEventId;
      return unacked >= ACK_EVERY || this.unackedBytes >= ACK_BYTES ||
        (unacked > 0 && this.ackTimer === null);
    },

    post: function () {
      var session = this;
      if (this.id === null || this.ended) {
        return;
      }
      if (this.posting) {
        if (this.heldBack() && !this.acking && this.ackDue()) {
          this.postAck();
        }
        return;
      }
      if (this.queue.length === 0 && !this.ackDue()) {
        return;
      }
      this.posting = true;
      this.batch().then(function (batch) {
        if (session.ended) {
          /* The page left while its Blobs were read: the POST sent on
           * pagehide took over these numbers, and has the last word. */
          return;
        }
        var ack = session.lastEventId;
        session.unackedBytes = 0;
        session.inFlight = batch.frames;
        return session.send(batch.body, ack).then(function (response) {
          var transient = response.status === 408 || response.status === 429 || response.status >= 500;
          if (!response.ok && !transient) {
            /* 410: the server no longer holds the session; others: it refused it */
            session.fail(response.status === SESSION_GONE);
            return;
          }
          if (!response.ok) {
            throw new Error("frames answered " + response.status);
          }
          session.retryMs = 0;
          session.postFailingSince = null;
          session.ackedEventId = Math.max(session.ackedEventId, ack);
          session.accepted(batch.frames.length ? batch.frames[batch.frames.length - 1].seq : -1);
          session.queue.splice(0, batch.frames.length);
        });
      }).catch(function (error) {
        /* A failed POST: the same frames go again, and the server drops any
         * it had.  One that only went quiet while the server held its frames
         * back (for a slow app; or its answer was lost) is asked again at
         * once, and is no sign of a server gone, which the stream would
         * show: it does not count towards giving up. */
        if (error && error.quiet && session.heldBack()) {
          session.retryMs = 0;
          session.postFailingSince = null;
          return null;
        }
        if (session.postFailingSince === null) {
          session.postFailingSince = Date.now();
        } else if (Date.now() - session.postFailingSince > session.graceMs) {
          session.fail();
        }
        session.retryMs = Math.min(Math.max(session.retryMs * 2, 100), 5000);
        return new Promise(function (resolve) { setTimeout(resolve, session.retryMs); });
      }).then(function () {
        session.posting = false;
        session.inFlight = null;
        session.post();
      });
    },

    /* Whether the server holds the POST in flight back (it said it applied
     * its frames, and answers once the app's sockets have taken them). */
    heldBack: function () {
      var frames = this.inFlight;
      return frames !== null && frames.length > 0 && frames[frames.length - 1].accepted === true;
    },

    /* An acknowledgement on its own, while the server holds the frames' POST
     * back.  It cannot wait for that POST: an app that stops reading while it
     * cannot write, its events held back until the page acknowledges them,
     * would never take the frames. */
    postAck: function () {
      var session = this;
      var ack = this.lastEventId;
      this.acking = true;
      this.unackedBytes = 0;
      this.send(new Uint8Array(8), ack).then(function (response) {
        if (response.ok) {
          session.ackedEventId = Math.max(session.ackedEventId, ack);
        }
        return response.ok;
      }, function () {
        return false;
      }).then(function (ok) {
        /* Whatever came due meanwhile goes now; after a failure, a little later. */
        setTimeout(function () {
          session.acking = false;
          session.post();
        }, ok ? 0 : ACK_AFTER_MS);
      });
    },

    /* One POST to the send endpoint, by XMLHttpRequest for its upload's
     * progress.  One that moves nothing (no byte of its body sent, no
     * answer) for as long as a silent stream is given is taken for lost (a
     * connection a gateway dropped without a word never answers) and
     * aborted, so that its frames go again: the server applies each frame
     * once, and holds a repeated POST back as it held the first.  A slow
     * upload keeps moving, and is let finish. */
    send: function (body, ack) {
      var session = this;
      return new Promise(function (resolve, reject) {
        var xhr = new XMLHttpRequest();
        var movedAt = Date.now();
        var quiet = false;
        var watchdog = setInterval(function () {
          if (Date.now() - movedAt > session.watchdogMs) {
            quiet = true;
            xhr.abort();
          }
        }, 250);
        function moved() {
          movedAt = Date.now();
        }
        function failed() {
          clearInterval(watchdog);
          var error = new Error(quiet ? "frames unanswered" : "frames not sent");
          error.quiet = quiet;
          reject(error);
        }
        xhr.open("POST", endpoints + "send");
        xhr.setRequestHeader("Content-Type", FRAMES_TYPE);
        xhr.setRequestHeader(SESSION_HEADER, session.id);
        xhr.setRequestHeader(ACK_HEADER, String(ack));
        xhr.upload.onprogress = moved;
        xhr.upload.onload = moved;
        xhr.onload = function () {
          clearInterval(watchdog);
          resolve({ status: xhr.status, ok: xhr.status >= 200 && xhr.status < 300 });
        };
        xhr.onerror = failed;
        xhr.onabort = failed;
        xhr.send(body);
      });
    },

    batch: function () {
      var frames = [];
      var bytes = 8;
      for (var i = 0; i < this.queue.length; i++) {
        var frame = this.queue[i];
        var length = 9 + (frame.payload instanceof Uint8Array ? frame.payload.length : frame.payload.size);
        if (frames.length && bytes + length > BATCH_BYTES) {
          break;
        }
        frames.push(frame);
        bytes += length;
      }
      /* Blobs are read in order, before the batch is built; one that cannot
       * be read (a file changed on disk) fails its socket, as natively. */
      return Promise.all(frames.map(function (frame) {
        if (frame.payload instanceof Uint8Array) {
          return null;
        }
        return frame.payload.arrayBuffer().then(function (buffer) {
          frame.payload = new Uint8Array(buffer);
        }, function () {
          frame.kind = FRAME_ABORT;
          frame.payload = new Uint8Array(0);
          frame.transport.aborted = true;
        });
      })).then(function () {
        bytes = 8;
        frames.forEach(function (frame) { bytes += 9 + frame.payload.length; });
        var body = new Uint8Array(bytes);
        var view = new DataView(body.buffer);
        var first = frames.length ? frames[0].seq : 0;
        view.setUint32(0, Math.floor(first / 4294967296));
        view.setUint32(4, first >>> 0);
        var offset = 8;
        frames.forEach(function (frame) {
          view.setUint8(offset, frame.kind);
          view.setUint32(offset + 1, frame.transport.number);
          view.setUint32(offset + 5, frame.payload.length);
          body.set(frame.payload, offset + 9);
          offset += 9 + frame.payload.length;
        });
        return { body: body, frames: frames };
      });
    },

    /* The end of the session. */

    fail: function (gone) {
      /* The session is lost: every socket fails.  If the server said it no
       * longer holds it (410), one still connecting for the first time tries
       * a new session instead. */
      if (this.ended) {
        return; /* its sockets went when it ended (a late answer to an old POST) */
      }
      var sockets = this.sockets;
      this.end();
      Object.keys(sockets).forEach(function (number) {
        var socket = sockets[number];
        /* (One whose open or close already came is no longer connecting
         * for wsse, whatever the page has seen of it yet.) */
        if (gone && socket.readyState === CONNECTING && !socket.aborted && !socket.reopened &&
            !socket.serverOpened && !socket.serverClosed) {
          socket.reopen();
        } else {
          socket.failSoon();
        }
      });
    },

    end: function () {
      if (this.ended) {
        return;
      }
      this.ended = true;
      clearTimeout(this.ackTimer);
      clearTimeout(this.idleTimer);
      if (this.controller) {
        this.controller.abort();
      }
    }
  };

  /* The session a page ended as it went away, for pageshow if it comes back. */
  var leftSession = null;

  /* A page that goes away closes its sockets as a browser does (1001 "going
   * away"), rather than leaving the app to wait out the grace period. */
  window.addEventListener("pagehide", function () {
    if (session === null || session.ended || session.id === null) {
      return;
    }
    var leaving = session;
    leftSession = leaving;
    /* The frames not yet accepted go along, in order and under their own
     * numbers (the server applies each number once, and an unfinished POST
     * may carry them too), up to the first Blob not read yet: there is no
     * time to read it now, and nothing may go after it without it.  A socket
     * with frames cut off is not closed cleanly, as if all it sent had gone:
     * it is aborted (the app sees its socket drop). */
    var queue = leaving.queue;
    var frames = [];
    var cutOff = [];
    var i = 0;
    while (i < queue.length && queue[i].accepted) {
      i++;
    }
    var seq = i < queue.length ? queue[i].seq : leaving.nextSeq;
    for (; i < queue.length && queue[i].payload instanceof Uint8Array; i++) {
      frames.push(queue[i]);
    }
    for (; i < queue.length; i++) {
      if (cutOff.indexOf(queue[i].transport) < 0) {
        cutOff.push(queue[i].transport);
      }
    }
    var numbers = Object.keys(leaving.sockets);
    var bytes = 8;
    frames.forEach(function (frame) { bytes += 9 + frame.payload.length; });
    var closes = numbers.map(function (number) {
      var transport = leaving.sockets[number];
      var kind = transport.readyState === CONNECTING || cutOff.indexOf(transport) >= 0 ?
        FRAME_ABORT : FRAME_CLOSE;
      var payload = kind === FRAME_CLOSE ? new Uint8Array([1001 >> 8, 1001 & 0xff]) : new Uint8Array(0);
      bytes += 9 + payload.length;
      return { kind: kind, transport: transport, payload: payload };
    });
    leaving.end();
    if (bytes > 60000 || closes.length === 0) {
      return; /* past what a request sent while leaving may carry: the grace period ends it */
    }
    var body = new Uint8Array(bytes);
    var view = new DataView(body.buffer);
    view.setUint32(0, Math.floor(seq / 4294967296));
    view.setUint32(4, seq >>> 0);
    var offset = 8;
    frames.concat(closes).forEach(function (frame) {
      view.setUint8(offset, frame.kind);
      view.setUint32(offset + 1, frame.transport.number);
      view.setUint32(offset + 5, frame.payload.length);
      body.set(frame.payload, offset + 9);
      offset += 9 + frame.payload.length;
    });
    var headers = { "Content-Type": FRAMES_TYPE };
    headers[SESSION_HEADER] = leaving.id;
    headers[ACK_HEADER] = String(leaving.lastEventId);
    fetch(endpoints + "send", {
      method: "POST",
      headers: headers,
      body: body,
      keepalive: true,
      credentials: "same-origin"
    }).catch(function () { /* gone with the page */ });
  });

  /* A page back from the back/forward cache: its session ended as it left,
   * so its fallback sockets are dead.  Chromium closes native sockets on
   * entering the cache (the server sees 1001) and, once the page is back,
   * fires error then close (1006, not clean) at them, so that the app's
   * reconnect logic runs: the fallback's sockets do the same. */
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted || leftSession === null) {
      return;
    }
    var left = leftSession;
    leftSession = null;
    Object.keys(left.sockets).forEach(function (number) {
      left.sockets[number].failSoon();
    });
  });

  /* ---- The WebSocket the page sees ---------------------------------------- */

  /* Per-socket state lives here rather than on the instance, so a wrapper
   * shows no own properties, as a native socket shows none. */
  var internals = new WeakMap();

  class WebSocket extends EventTarget {
    constructor(url) {
      super();
      if (arguments.length < 1) {
        throw new TypeError("Failed to construct 'WebSocket': 1 argument required, but only 0 present.");
      }
      var protocols = arguments[1];
      var parsed = parseURL(url);
      var list = parseProtocols(protocols);
      var state = {
        binaryType: "blob",
        handlers: {},
        transport: null,
        url: parsed.href,
        origin: parsed.protocol + "//" + parsed.host,
        protocols: list,
        closeRequested: false
      };
      internals.set(this, state);
      var path = bridgedPath(parsed);
      if (path !== null && fallbackFirst()) {
        state.transport = new FallbackTransport(this, state, path, false);
      } else {
        state.transport = new NativeTransport(this, state, nativeURL(parsed, path), protocols === undefined ? undefined : list, path);
      }
    }

    get url() { return internals.get(this).url; }
    get readyState() { return internals.get(this).transport.readyState; }
    get bufferedAmount() { return internals.get(this).transport.bufferedAmount; }
    get protocol() { return internals.get(this).transport.protocol; }
    get extensions() { return internals.get(this).transport.extensions; }

    get binaryType() { return internals.get(this).binaryType; }
    set binaryType(value) {
      if (value !== "blob" && value !== "arraybuffer") {
        return; /* an invalid enum value is ignored, as natively */
      }
      var state = internals.get(this);
      state.binaryType = value;
      state.transport.setBinaryType(value);
    }

    send(data) {
      if (arguments.length < 1) {
        throw new TypeError("Failed to execute 'send' on 'WebSocket': 1 argument required, but only 0 present.");
      }
      internals.get(this).transport.send(data);
    }

    close(code, reason) {
      var state = internals.get(this);
      checkClose(code, reason);
      state.closeRequested = true;
      state.transport.close(code, reason);
    }
  }

  /* onopen/onmessage/onerror/onclose behave as event handler attributes: the
   * listener keeps the position of the first assignment, null removes it. */
  ["open", "message", "error", "close"].forEach(function (type) {
    Object.defineProperty(WebSocket.prototype, "on" + type, {
      configurable: true,
      enumerable: true,
      get: function () {
        var slot = internals.get(this).handlers[type];
        return slot ? slot.handler : null;
      },
      set: function (value) {
        var handlers = internals.get(this).handlers;
        var slot = handlers[type];
        var handler = (typeof value === "function" || (value && typeof value === "object")) ? value : null;
        if (handler === null) {
          if (slot) {
            this.removeEventListener(type, slot.invoke);
            delete handlers[type];
          }
          return;
        }
        if (slot) {
          slot.handler = handler;
          return;
        }
        slot = { handler: handler, invoke: null };
        slot.invoke = function (event) {
          var h = slot.handler;
          var result = typeof h === "function" ? h.call(this, event) : undefined;
          if (result === false) {
            event.preventDefault();
          }
        };
        handlers[type] = slot;
        this.addEventListener(type, slot.invoke);
      }
    });
  });

  Object.defineProperty(WebSocket.prototype, Symbol.toStringTag, {
    value: "WebSocket",
    configurable: true
  });

  STATE_NAMES.forEach(function (name, value) {
    var descriptor = { value: value, enumerable: true, writable: false, configurable: false };
    Object.defineProperty(WebSocket, name, descriptor);
    Object.defineProperty(WebSocket.prototype, name, descriptor);
  });

  Object.defineProperty(window, "WebSocket", {
    configurable: true,
    enumerable: false,
    writable: true,
    value: WebSocket
  });

  Object.defineProperty(window, "__wsse", {
    configurable: false,
    enumerable: false,
    writable: false,
    value: Object.freeze({
      NativeWebSocket: NativeWebSocket,
      pagePath: pagePath,
      prefix: prefix,
      endpoints: endpoints,
      transportOf: function (socket) {
        var state = internals.get(socket);
        return state ? state.transport.kind : undefined;
      },
      sessionId: function () {
        return session && !session.ended ? session.id : null;
      }
    })
  });
})();
