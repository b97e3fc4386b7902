// Talking to the coordinator: where it is (config.json, read at run time), who we are (an API
// key kept in this browser), typed calls, and live streams with a polling fallback.

export type Json = Record<string, unknown>;

export interface ErrorBody {
  code: string;
  message: string;
  field: string | null;
  errors?: { field: string; message: string }[];
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public body: ErrorBody,
  ) {
    super(body.message);
  }
}

const KEY = "gridx.apiKey";
let base: Promise<string> | null = null;

/** The API's base URL: `apiBase` from config.json next to these files; empty = same origin. */
export function apiBase(): Promise<string> {
  base ??= fetch("/config.json", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : {}))
    .then((c: { apiBase?: string }) => (c.apiBase ?? "").replace(/\/$/, ""))
    .catch(() => "");
  return base;
}

export function getKey(): string | null {
  return typeof window === "undefined" ? null : window.localStorage.getItem(KEY);
}

export function setKey(key: string | null): void {
  if (key) window.localStorage.setItem(KEY, key);
  else window.localStorage.removeItem(KEY);
}

async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const key = getKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const resp = await fetch((await apiBase()) + path, { ...init, headers });
  if (!resp.ok) {
    let body: ErrorBody = { code: `http_${resp.status}`, message: resp.statusText, field: null };
    try {
      body = (await resp.json()) as ErrorBody;
    } catch {
      /* not JSON */
    }
    throw new ApiError(resp.status, body);
  }
  return resp;
}

export async function getJson<T>(path: string): Promise<T> {
  return (await (await request(path)).json()) as T;
}

export async function postJson<T>(path: string, body: unknown): Promise<T> {
  const resp = await request(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return (await resp.json()) as T;
}

export async function deleteIt(path: string): Promise<void> {
  await request(path, { method: "DELETE" });
}

export async function postForm<T>(path: string, form: FormData): Promise<T> {
  return (await (await request(path, { method: "POST", body: form })).json()) as T;
}

/** Download a file the API serves behind the key (a plain link cannot send the header). */
export async function download(path: string, filename: string): Promise<void> {
  const blob = await (await request(path)).blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(url);
}

/**
 * Follow a server-sent event stream (read with fetch, so the key travels in a header), calling
 * `onData` with each JSON message. If the stream fails or ends early, poll `fallback` every 2 s.
 * Returns a function that stops everything.
 */
export function live<T>(
  stream: string,
  fallback: string,
  onData: (value: T) => void,
  onMode?: (mode: "live" | "polling") => void,
  keepPolling = false,
): () => void {
  const abort = new AbortController();
  let timer: ReturnType<typeof setInterval> | null = null;
  const poll = () => {
    if (timer || abort.signal.aborted) return;
    onMode?.("polling");
    const tick = () => getJson<T>(fallback).then(onData).catch(() => undefined);
    tick();
    timer = setInterval(tick, 2000);
  };
  (async () => {
    try {
      const resp = await request(stream, { signal: abort.signal, headers: { Accept: "text/event-stream" } });
      if (!resp.body) throw new Error("no stream");
      onMode?.("live");
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let received = 0;
      let revoked = false; // the server ended the stream: the key no longer works
      while (!revoked) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = (buffer + value).replace(/\r\n/g, "\n"); // servers may end lines with CRLF
        let cut: number;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (/^event:\s*revoked/m.test(event)) {
            revoked = true; // polling will meet the 401/403 and say so
            break;
          }
          const data = event
            .split("\n")
            .filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).trimStart())
            .join("\n");
          if (data) {
            received += 1;
            onData(JSON.parse(data) as T);
          }
        }
      }
      if (received > 0 && !keepPolling && !revoked) return; // the server ended it: nothing more will change
    } catch {
      /* fall through to polling */
    }
    if (!abort.signal.aborted) poll();
  })();
  return () => {
    abort.abort();
    if (timer) clearInterval(timer);
  };
}
