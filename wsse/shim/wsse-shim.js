/* wsse shim: replaces window.WebSocket with a faithful stand-in.
 *
 * wsse injects this file inline into HTML documents, before any script of the
 * page, so the page's code only ever sees this constructor.  Each socket is
 * carried by a transport; the native transport delegates to the browser's own
 * WebSocket.  Per-page settings come from the data-wsse attribute of the
 * script element (see wsse/_protocol.py).
 *
 * Written as ES2017 without crypto.randomUUID or other secure-context-only
 * APIs: pages served over plain http on a non-localhost name must work.
 */
(function () {
  "use strict";

  var NativeWebSocket = window.WebSocket;
  if (typeof NativeWebSocket !== "function" || window.__wsse) {
    return;
  }

  var script = document.currentScript;
  var config = new URLSearchParams((script && script.getAttribute("data-wsse")) || "");
  var STATE_NAMES = ["CONNECTING", "OPEN", "CLOSING", "CLOSED"];

  /* The native transport: the browser's own socket, its events re-dispatched
   * on the wrapper so that handlers see the wrapper as their target. */
  function NativeTransport(owner, url, protocols) {
    var ws = protocols === undefined
      ? new NativeWebSocket(url)
      : new NativeWebSocket(url, protocols);
    this.ws = ws;
    this.kind = "native";
    ws.addEventListener("open", function () {
      owner.dispatchEvent(new Event("open"));
    });
    ws.addEventListener("message", function (event) {
      owner.dispatchEvent(new MessageEvent("message", {
        data: event.data,
        origin: event.origin,
        lastEventId: event.lastEventId
      }));
    });
    ws.addEventListener("error", function () {
      owner.dispatchEvent(new Event("error"));
    });
    ws.addEventListener("close", function (event) {
      owner.dispatchEvent(new CloseEvent("close", {
        code: event.code,
        reason: event.reason,
        wasClean: event.wasClean
      }));
    });
  }
  NativeTransport.prototype = {
    get url() { return this.ws.url; },
    get readyState() { return this.ws.readyState; },
    get bufferedAmount() { return this.ws.bufferedAmount; },
    get protocol() { return this.ws.protocol; },
    get extensions() { return this.ws.extensions; },
    setBinaryType: function (value) { this.ws.binaryType = value; },
    send: function (data) { this.ws.send(data); },
    close: function (code, reason) {
      if (code === undefined) {
        this.ws.close();
      } else if (reason === undefined) {
        this.ws.close(code);
      } else {
        this.ws.close(code, reason);
      }
    }
  };

  /* Per-socket state lives here rather than on the instance, so a wrapper
   * shows no own properties, as a native socket shows none. */
  var internals = new WeakMap();

  class WebSocket extends EventTarget {
    constructor(url, protocols) {
      super();
      var state = { binaryType: "blob", handlers: {}, transport: null };
      internals.set(this, state);
      state.transport = new NativeTransport(this, url, protocols);
    }

    get url() { return internals.get(this).transport.url; }
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
      internals.get(this).transport.close(code, reason);
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
      pagePath: config.get("path"),
      endpoints: config.get("base"),
      transportOf: function (socket) {
        var state = internals.get(socket);
        return state ? state.transport.kind : undefined;
      }
    })
  });
})();
