// The live feed: a WebSocket speaking protocol v2 (see the crate docs of
// ioc-dashboard-api). Subscribes after `hello`, checks `seq` for gaps, watches for silence
// and reconnects with backoff.

const HEARTBEAT_MS = 20_000;
const SILENCE_MS = 3 * HEARTBEAT_MS;
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;

export class LiveFeed {
  /**
   * @param {object} o
   * @param {() => string} o.url the WebSocket URL (token included), read at each connect
   * @param {string[]} o.channels channels to subscribe to
   * @param {(msg: object) => void} o.onMessage every snapshot, kpi, alert, dead_letter and heartbeat
   * @param {(state: string, detail?: string) => void} o.onState connecting, live,
   *   reconnecting, offline
   * @param {() => void} o.onRefused the socket closed before `hello` (maybe a bad token)
   */
  constructor(o) {
    this.o = o;
    this.ws = null;
    this.failures = 0;
    this.timer = null;
    this.watchdog = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => this.check(), 5_000);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.watchdog);
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'bye');
  }

  connect() {
    clearTimeout(this.timer);
    this.o.onState(this.failures ? 'reconnecting' : 'connecting');
    const ws = new WebSocket(this.o.url());
    this.ws = ws;
    this.expected = 1;
    this.greeted = false;
    this.lastRx = Date.now();
    ws.onmessage = (e) => {
      if (ws !== this.ws) return;
      this.lastRx = Date.now();
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      this.handle(ws, msg);
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (!this.greeted) this.o.onRefused?.();
      this.retry();
    };
    ws.onerror = () => {}; // a close follows
  }

  handle(ws, msg) {
    if (typeof msg.seq === 'number') {
      if (msg.seq !== this.expected) {
        console.warn(`live feed: seq ${msg.seq}, expected ${this.expected}; reconnecting`);
        this.restart();
        return;
      }
      this.expected = msg.seq + 1;
    }
    switch (msg.type) {
      case 'hello':
        this.greeted = true;
        ws.send(JSON.stringify({ type: 'subscribe', channels: this.o.channels }));
        break;
      case 'snapshot':
        this.failures = 0;
        this.o.onState('live');
        this.o.onMessage(msg);
        break;
      case 'kpi':
      case 'alert':
      case 'dead_letter':
      case 'heartbeat':
        this.o.onMessage(msg);
        break;
      case 'lagged':
        console.info(`live feed lagged on ${msg.feed}: ${msg.skipped} skipped; a snapshot follows`);
        break;
      case 'error':
        console.warn('live feed refused a message:', msg.message);
        break;
      default:
        break; // subscribed, pong, and types of later versions
    }
  }

  /** Drops the connection and opens a new one after the backoff. */
  restart() {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(4000, 'client restart');
    this.retry();
  }

  retry() {
    if (this.stopped) return;
    this.failures += 1;
    this.o.onState(this.failures > 3 ? 'offline' : 'reconnecting');
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.failures - 1));
    const delay = base / 2 + Math.random() * (base / 2);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** No message for three heartbeat intervals: the link is dead even if the socket says not. */
  check() {
    if (this.ws && Date.now() - this.lastRx > SILENCE_MS) {
      console.warn('live feed silent for 60 s; reconnecting');
      this.restart();
    }
  }
}
