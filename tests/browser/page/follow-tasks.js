// Follow your tasks live from a browser: every change as it happens, reminders when due.
//
// 1. Sync: page through GET /api/tasks/changes (no `since`): every task you have, and the
//    cursor to continue from.
// 2. Follow: POST /api/events/tickets for a single-use ticket (EventSource cannot send an
//    Authorization header), then open EventSource(`/api/events?ticket=…&since=<cursor>`).
//    Each change arrives once, in order; its event id is the cursor right after it.
// 3. Reconnect: a ticket opens one stream, so the browser's own retry (the same URL) would be
//    refused. On any error: close, get a new ticket, reopen with `since` = the id of the last
//    change applied. The stream resumes right after it: nothing missed, nothing twice, also
//    across a restart of the API. Only if that cursor has grown too old (410 from the feed)
//    does it sync again from the start.
//
//   const follower = followTasks({
//     api: "https://api.example.com",
//     getToken: async () => (await authClient.token()).data.token, // Better Auth
//     onReset: () => tasks.clear(),                                // a full sync begins
//     onChange: (change) => change.type === "upsert"
//       ? tasks.set(change.task.id, change.task)
//       : tasks.delete(change.id),
//     onReminder: (task) => new Notification(task.title),
//     onStatus: (status) => console.log(status),                   // connecting, live, reconnecting
//   });
//   // later: follower.close();

export function followTasks({
  api,
  getToken,
  onReset = () => {},
  onChange,
  onReminder = () => {},
  onStatus = () => {},
}) {
  let cursor = null; // the id of the last change applied: where a new stream resumes
  let source = null;
  let timer = null;
  let retryMs = 0;
  let stopped = false;

  async function authorized(path, init = {}) {
    const headers = { ...init.headers, Authorization: `Bearer ${await getToken()}` };
    return fetch(new URL(path, api), { ...init, headers });
  }

  async function fullSync() {
    onReset();
    let since = null;
    for (;;) {
      const query = since === null ? "" : `?since=${encodeURIComponent(since)}`;
      const response = await authorized(`/api/tasks/changes${query}`);
      if (!response.ok) throw new Error(`sync: HTTP ${response.status}`);
      const page = await response.json();
      for (const change of page.changes) onChange(change, { live: false });
      since = page.cursor;
      if (!page.has_more) return since;
    }
  }

  async function cursorTooOld() {
    const query = `?since=${encodeURIComponent(cursor)}&limit=1`;
    const response = await authorized(`/api/tasks/changes${query}`);
    return response.status === 410;
  }

  async function connect() {
    if (stopped) return;
    onStatus("connecting");
    let ticket;
    try {
      if (cursor === null) cursor = await fullSync();
      const response = await authorized("/api/events/tickets", { method: "POST" });
      if (!response.ok) throw new Error(`ticket: HTTP ${response.status}`);
      ({ ticket } = await response.json());
    } catch {
      retry(); // the API is unreachable or restarting: try again shortly
      return;
    }
    if (stopped) return;
    const url = new URL("/api/events", api);
    url.searchParams.set("ticket", ticket);
    url.searchParams.set("since", cursor);
    const stream = new EventSource(url);
    source = stream;
    let opened = false;
    stream.addEventListener("ready", () => {
      opened = true;
      retryMs = 0;
      onStatus("live");
    });
    const apply = (event) => {
      onChange(JSON.parse(event.data), { live: true, cursor: event.lastEventId });
      cursor = event.lastEventId; // only once applied: a change is never skipped
    };
    stream.addEventListener("task.upserted", apply);
    stream.addEventListener("task.deleted", apply);
    stream.addEventListener("task.reminder", (event) => onReminder(JSON.parse(event.data).task));
    stream.onerror = async () => {
      stream.close(); // its ticket is spent: the browser's own retry would be refused
      if (source !== stream) return;
      source = null;
      try {
        if (!opened && (await cursorTooOld())) cursor = null; // 410: sync again from the start
      } catch {
        // unreachable: keep the cursor, retry below
      }
      retry();
    };
  }

  function retry() {
    if (stopped) return;
    onStatus("reconnecting");
    retryMs = Math.min(Math.max(2 * retryMs, 250), 5000); // 250 ms, 500 ms, 1 s, … 5 s
    timer = setTimeout(connect, retryMs / 2 + Math.random() * (retryMs / 2));
  }

  connect();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      source?.close();
    },
  };
}
