// The admin API (/v1), as the console calls it.
import { useEffect, useRef, useState, useCallback } from "preact/hooks";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!r.ok) {
    const message = (data && data.message) || `${r.status} ${r.statusText}`;
    throw new ApiError(r.status, message);
  }
  return data;
}

// Polls `path` every `ms` (and at once when `path` changes): live data without reloads.
// Polling pauses while the tab is hidden.
export function usePoll(path, ms = 2000) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const tick = useRef(0);
  const load = useCallback(async () => {
    if (!path) return;
    const mine = ++tick.current;
    try {
      const data = await api("GET", path);
      if (mine === tick.current) setState({ data, error: null, loading: false });
    } catch (e) {
      if (mine === tick.current) setState((s) => ({ data: s.data, error: e.message, loading: false }));
    }
  }, [path]);
  useEffect(() => {
    setState({ data: null, error: null, loading: true });
    load();
    if (!ms) return undefined;
    const id = setInterval(() => {
      if (!document.hidden) load();
    }, ms);
    return () => clearInterval(id);
  }, [load, ms]);
  return { ...state, reload: load };
}

// A bounded history of samples (for charts), appended to by the caller.
export function useHistory(limit = 90) {
  const [points, setPoints] = useState([]);
  const push = useCallback((p) => setPoints((ps) => [...ps.slice(-(limit - 1)), p]), [limit]);
  const clear = useCallback(() => setPoints([]), []);
  return [points, push, clear];
}

export function formatBytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatNumber(n) {
  if (n == null) return "–";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });
}

export function formatTime(ms) {
  if (ms == null || ms < 0) return "–";
  const d = new Date(Number(ms));
  return d.toISOString().replace("T", " ").replace("Z", " UTC");
}

// Bytes from base64 (the API's encoding of keys, values and headers).
export function fromBase64(b64) {
  if (b64 == null) return null;
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const textDecoder = new TextDecoder("utf-8", { fatal: false });

// Shows bytes as text, JSON (pretty when it parses) or hex.
export function decodeBytes(bytes, as) {
  if (bytes == null) return { text: "null", kind: "null" };
  if (as === "hex") {
    return { text: Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" "), kind: "hex" };
  }
  const text = textDecoder.decode(bytes);
  if (as === "json") {
    try {
      return { text: JSON.stringify(JSON.parse(text), null, 2), kind: "json" };
    } catch {
      return { text, kind: "text", note: "not JSON" };
    }
  }
  return { text, kind: "text" };
}
