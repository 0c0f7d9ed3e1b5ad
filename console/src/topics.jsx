import { useState, useEffect, useCallback } from "preact/hooks";
import { api, usePoll, formatBytes, formatNumber, formatTime, fromBase64, decodeBytes } from "./api.js";
import { Badge, Field, Notice, Table } from "./ui.jsx";

export function Topics() {
  const topics = usePoll("/v1/topics", 3000);
  const [filter, setFilter] = useState("");
  const [showInternal, setShowInternal] = useState(false);
  const rows = (topics.data || []).filter(
    (t) => (showInternal || !t.internal) && t.name.toLowerCase().includes(filter.toLowerCase()),
  );
  return (
    <section aria-labelledby="topics-title">
      <h1 id="topics-title">Topics</h1>
      <Notice kind="error">{topics.error}</Notice>
      <CreateTopic onCreated={topics.reload} />
      <div class="toolbar">
        <Field label="Filter">
          <input type="search" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} placeholder="topic name" />
        </Field>
        <label class="check">
          <input type="checkbox" checked={showInternal} onChange={(e) => setShowInternal(e.currentTarget.checked)} /> internal topics
        </label>
      </div>
      <Table
        testid="topics"
        rowKey={(t) => t.name}
        columns={[
          { key: "name", label: "Name", render: (t) => <a href={`#/topics/${encodeURIComponent(t.name)}`}>{t.name}</a> },
          { key: "partitions", label: "Partitions", numeric: true, render: (t) => t.partitions.length },
          { key: "rf", label: "Replicas", numeric: true, render: (t) => (t.partitions[0] ? t.partitions[0].replicas.length : "–") },
          {
            key: "health",
            label: "Health",
            render: (t) => {
              const offline = t.partitions.filter((p) => p.leader < 0).length;
              const under = t.partitions.filter((p) => p.isr.length < p.replicas.length).length;
              if (offline) return <Badge kind="bad">{offline} offline</Badge>;
              if (under) return <Badge kind="warn">{under} under-replicated</Badge>;
              return <Badge kind="good">ok</Badge>;
            },
          },
          { key: "internal", label: "", render: (t) => (t.internal ? <Badge>internal</Badge> : "") },
        ]}
        rows={rows}
        empty={topics.loading ? "Loading…" : "No topics."}
      />
    </section>
  );
}

function CreateTopic({ onCreated }) {
  const [name, setName] = useState("");
  const [partitions, setPartitions] = useState("");
  const [rf, setRf] = useState("");
  const [status, setStatus] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setStatus(null);
    try {
      const body = { name: name.trim() };
      if (partitions) body.partitions = Number(partitions);
      if (rf) body.replication_factor = Number(rf);
      await api("POST", "/v1/topics", body);
      setStatus({ kind: "ok", text: `Created topic ${body.name}.` });
      setName("");
      onCreated();
    } catch (err) {
      setStatus({ kind: "error", text: err.message });
    }
  };
  return (
    <details class="panel">
      <summary>Create a topic</summary>
      <form class="form-row" onSubmit={submit} aria-label="Create a topic">
        <Field label="Name">
          <input name="topic-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <Field label="Partitions">
          <input name="partitions" type="number" min="1" max="1000" placeholder="default" value={partitions} onInput={(e) => setPartitions(e.currentTarget.value)} />
        </Field>
        <Field label="Replication factor">
          <input name="replication-factor" type="number" min="1" max="32" placeholder="default" value={rf} onInput={(e) => setRf(e.currentTarget.value)} />
        </Field>
        <button type="submit">Create</button>
      </form>
      {status && <Notice kind={status.kind === "ok" ? "info" : "error"}>{status.text}</Notice>}
    </details>
  );
}

export function TopicDetail({ name }) {
  const topic = usePoll(`/v1/topics/${encodeURIComponent(name)}`, 3000);
  const [tab, setTab] = useState("messages");
  const [deleted, setDeleted] = useState(null);
  const t = topic.data;
  const remove = async () => {
    if (!confirm(`Delete topic ${name} and all its messages?`)) return;
    try {
      await api("DELETE", `/v1/topics/${encodeURIComponent(name)}`);
      setDeleted({ kind: "info", text: `Topic ${name} deleted.` });
      location.hash = "#/topics";
    } catch (e) {
      setDeleted({ kind: "error", text: e.message });
    }
  };
  return (
    <section aria-labelledby="topic-title">
      <p class="crumbs">
        <a href="#/topics">Topics</a> /
      </p>
      <h1 id="topic-title">{name}</h1>
      <Notice kind="error">{topic.error}</Notice>
      {deleted && <Notice kind={deleted.kind === "error" ? "error" : "info"}>{deleted.text}</Notice>}
      {t && (
        <p class="subtle">
          {t.partitions.length} partition(s) · id <code>{t.topic_id}</code>
          {t.internal && <> · <Badge>internal</Badge></>}{" "}
          <button class="danger small" onClick={remove}>
            Delete topic
          </button>
        </p>
      )}
      <div class="tabs" role="tablist">
        {[
          ["messages", "Messages"],
          ["partitions", "Partitions"],
          ["configs", "Configs"],
        ].map(([id, label]) => (
          <button role="tab" aria-selected={tab === id} class={tab === id ? "tab active" : "tab"} onClick={() => setTab(id)}>
            {label}
          </button>
        ))}
      </div>
      {t && tab === "messages" && <Messages topic={t} />}
      {t && tab === "partitions" && <Partitions topic={t} onChange={topic.reload} />}
      {t && tab === "configs" && <Configs topic={t} onChange={topic.reload} />}
    </section>
  );
}

function Partitions({ topic, onChange }) {
  const [count, setCount] = useState("");
  const [status, setStatus] = useState(null);
  const [moving, setMoving] = useState("0");
  const [replicas, setReplicas] = useState("");
  const moves = usePoll("/v1/reassignments", 3000);
  const inProgress = (moves.data || []).filter((m) => m.topic === topic.name);
  const run = async (what, action) => {
    setStatus(null);
    try {
      const answer = await action();
      setStatus({ kind: "info", text: typeof what === "function" ? what(answer) : what });
      onChange();
      moves.reload();
    } catch (err) {
      setStatus({ kind: "error", text: err.message });
    }
  };
  const base = `/v1/topics/${encodeURIComponent(topic.name)}/partitions`;
  const grow = (e) => {
    e.preventDefault();
    run(`The topic now has ${count} partitions.`, () => api("POST", base, { count: Number(count) }));
  };
  const move = (e) => {
    e.preventDefault();
    const target = replicas
      .split(/[\s,]+/)
      .filter((x) => x !== "")
      .map(Number);
    run(`Partition ${moving} is moving to brokers ${target.join(", ")}; the first leads once the copy is done.`, () =>
      api("PUT", `${base}/${moving}/replicas`, { replicas: target }),
    );
  };
  const elect = () =>
    run(
      (r) => `Preferred leaders: ${r.elected.length} elected, ${r.not_needed.length} already leading${r.failed.length ? `, ${r.failed.length} not possible` : ""}.`,
      () => api("POST", "/v1/elections", { topic: topic.name }),
    );
  return (
    <div>
      <Table
        testid="partitions"
        rowKey={(p) => p.partition}
        columns={[
          { key: "partition", label: "Partition", numeric: true },
          { key: "leader", label: "Leader", numeric: true, render: (p) => (p.leader < 0 ? <Badge kind="bad">none</Badge> : p.leader) },
          { key: "leader_epoch", label: "Epoch", numeric: true },
          { key: "replicas", label: "Replicas", render: (p) => p.replicas.join(", ") },
          {
            key: "isr",
            label: "ISR",
            render: (p) => (p.isr.length < p.replicas.length ? <Badge kind="warn">{p.isr.join(", ")}</Badge> : p.isr.join(", ")),
          },
          { key: "log_start_offset", label: "Log start", numeric: true, render: (p) => formatNumber(p.log_start_offset) },
          { key: "high_watermark", label: "High watermark", numeric: true, render: (p) => formatNumber(p.high_watermark) },
          { key: "size_bytes", label: "Size", numeric: true, render: (p) => formatBytes(p.size_bytes) },
        ]}
        rows={topic.partitions}
      />
      {inProgress.length > 0 && (
        <Table
          testid="reassignments"
          caption="Moves in progress"
          rowKey={(m) => m.partition}
          columns={[
            { key: "partition", label: "Partition", numeric: true },
            { key: "replicas", label: "Replicas", render: (m) => m.replicas.join(", ") },
            { key: "adding", label: "Adding", render: (m) => m.adding.join(", ") || "–" },
            { key: "removing", label: "Removing", render: (m) => m.removing.join(", ") || "–" },
            {
              key: "cancel",
              label: "Cancel",
              render: (m) => (
                <button
                  class="danger small"
                  aria-label={`Cancel the move of partition ${m.partition}`}
                  onClick={() => run(`The move of partition ${m.partition} was cancelled.`, () => api("DELETE", `${base}/${m.partition}/reassignment`))}
                >
                  Cancel
                </button>
              ),
            },
          ]}
          rows={inProgress}
        />
      )}
      {status && <Notice kind={status.kind}>{status.text}</Notice>}
      <form class="form-row" onSubmit={grow} aria-label="Add partitions">
        <Field label="Grow to partitions">
          <input type="number" min={topic.partitions.length + 1} max="1000" required value={count} onInput={(e) => setCount(e.currentTarget.value)} />
        </Field>
        <button type="submit">Add partitions</button>
      </form>
      <form class="form-row" onSubmit={move} aria-label="Move a partition">
        <Field label="Partition">
          <select name="move-partition" value={moving} onChange={(e) => setMoving(e.currentTarget.value)}>
            {topic.partitions.map((p) => (
              <option value={String(p.partition)}>{p.partition}</option>
            ))}
          </select>
        </Field>
        <Field label="To brokers" hint="e.g. 2, 3, 1 (the first leads)">
          <input name="move-replicas" required pattern="\s*\d+(\s*[, ]\s*\d+)*\s*" value={replicas} onInput={(e) => setReplicas(e.currentTarget.value)} />
        </Field>
        <button type="submit">Move</button>
        <button type="button" class="secondary" onClick={elect}>
          Elect preferred leaders
        </button>
      </form>
    </div>
  );
}

function Configs({ topic, onChange }) {
  const [key, setKey] = useState("");
  const [value, setValue] = useState("");
  const [status, setStatus] = useState(null);
  const change = async (configs) => {
    try {
      await api("PATCH", `/v1/topics/${encodeURIComponent(topic.name)}/configs`, { configs });
      setStatus({ kind: "info", text: "Configs changed." });
      onChange();
    } catch (err) {
      setStatus({ kind: "error", text: err.message });
    }
  };
  const rows = Object.entries(topic.configs || {}).map(([k, v]) => ({ k, v }));
  return (
    <div>
      <Table
        testid="configs"
        rowKey={(r) => r.k}
        caption="Settings this topic overrides (the rest are the broker's defaults)"
        columns={[
          { key: "k", label: "Name", render: (r) => <code>{r.k}</code> },
          { key: "v", label: "Value", render: (r) => <code>{r.v}</code> },
          {
            key: "x",
            label: "",
            render: (r) => (
              <button class="small" onClick={() => change({ [r.k]: null })} aria-label={`Remove ${r.k}`}>
                Remove
              </button>
            ),
          },
        ]}
        rows={rows}
        empty="No overrides: the broker's defaults apply."
      />
      <form
        class="form-row"
        aria-label="Set a config"
        onSubmit={(e) => {
          e.preventDefault();
          change({ [key.trim()]: value });
        }}
      >
        <Field label="Name">
          <input required value={key} onInput={(e) => setKey(e.currentTarget.value)} placeholder="retention.ms" list="config-names" />
        </Field>
        <Field label="Value">
          <input required value={value} onInput={(e) => setValue(e.currentTarget.value)} />
        </Field>
        <button type="submit">Set</button>
        <datalist id="config-names">
          {["cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes", "segment.ms", "min.insync.replicas", "max.message.bytes", "compression.type", "message.timestamp.type", "remote.storage.enable", "local.retention.ms"].map((n) => (
            <option value={n} />
          ))}
        </datalist>
      </form>
      {status && <Notice kind={status.kind}>{status.text}</Notice>}
    </div>
  );
}

function Messages({ topic }) {
  const [partition, setPartition] = useState("");
  const [position, setPosition] = useState("latest");
  const [offset, setOffset] = useState("");
  const [time, setTime] = useState("");
  const [limit, setLimit] = useState("50");
  const [keyAs, setKeyAs] = useState("text");
  const [valueAs, setValueAs] = useState("text");
  const [live, setLive] = useState(false);
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(false);
  const query = () => {
    const q = new URLSearchParams();
    if (partition !== "") q.set("partition", partition);
    if (position === "offset" && offset !== "") q.set("offset", offset);
    else if (position === "timestamp" && time) q.set("timestamp", String(new Date(time).getTime()));
    else if (position === "earliest" || position === "latest") q.set("position", position);
    q.set("limit", limit);
    return q.toString();
  };
  const load = useCallback(async () => {
    setLoading(true);
    try {
      setPage(await api("GET", `/v1/topics/${encodeURIComponent(topic.name)}/records?${query()}`));
      setError(null);
    } catch (e) {
      setError(e.message);
    } finally {
      setLoading(false);
    }
  }, [topic.name, partition, position, offset, time, limit]);
  useEffect(() => {
    load();
  }, [topic.name]);
  useEffect(() => {
    if (!live) return undefined;
    const id = setInterval(() => !document.hidden && load(), 2000);
    return () => clearInterval(id);
  }, [live, load]);
  const show = (b64, as) => {
    const d = decodeBytes(fromBase64(b64), as);
    return <pre class={`cell cell-${d.kind}`} title={d.note}>{d.text}</pre>;
  };
  return (
    <div>
      <form
        class="form-row"
        aria-label="Browse messages"
        onSubmit={(e) => {
          e.preventDefault();
          load();
        }}
      >
        <Field label="Partition">
          <select value={partition} onChange={(e) => setPartition(e.currentTarget.value)}>
            <option value="">all</option>
            {topic.partitions.map((p) => (
              <option value={String(p.partition)}>{p.partition}</option>
            ))}
          </select>
        </Field>
        <Field label="From">
          <select value={position} onChange={(e) => setPosition(e.currentTarget.value)} name="position">
            <option value="latest">newest</option>
            <option value="earliest">oldest</option>
            <option value="offset">offset…</option>
            <option value="timestamp">time…</option>
          </select>
        </Field>
        {position === "offset" && (
          <Field label="Offset">
            <input type="number" min="0" required value={offset} onInput={(e) => setOffset(e.currentTarget.value)} />
          </Field>
        )}
        {position === "timestamp" && (
          <Field label="Time (local)">
            <input type="datetime-local" step="1" required value={time} onInput={(e) => setTime(e.currentTarget.value)} />
          </Field>
        )}
        <Field label="Limit">
          <select value={limit} onChange={(e) => setLimit(e.currentTarget.value)}>
            {["20", "50", "100", "500"].map((l) => (
              <option value={l}>{l}</option>
            ))}
          </select>
        </Field>
        <Field label="Key as">
          <select value={keyAs} onChange={(e) => setKeyAs(e.currentTarget.value)}>
            <option value="text">text</option>
            <option value="json">JSON</option>
            <option value="hex">hex</option>
          </select>
        </Field>
        <Field label="Value as">
          <select value={valueAs} onChange={(e) => setValueAs(e.currentTarget.value)} name="value-as">
            <option value="text">text</option>
            <option value="json">JSON</option>
            <option value="hex">hex</option>
          </select>
        </Field>
        <button type="submit" disabled={loading}>
          {loading ? "Loading…" : "Load"}
        </button>
        <label class="check">
          <input type="checkbox" checked={live} onChange={(e) => setLive(e.currentTarget.checked)} /> live
        </label>
      </form>
      <Notice kind="error">{error}</Notice>
      <Table
        testid="messages"
        rowKey={(r) => `${r.partition}-${r.offset}`}
        columns={[
          { key: "partition", label: "Partition", numeric: true },
          { key: "offset", label: "Offset", numeric: true },
          { key: "timestamp", label: "Timestamp", render: (r) => <time dateTime={new Date(r.timestamp).toISOString()}>{formatTime(r.timestamp)}</time> },
          { key: "key", label: "Key", render: (r) => show(r.key, keyAs) },
          { key: "value", label: "Value", render: (r) => show(r.value, valueAs) },
          {
            key: "headers",
            label: "Headers",
            render: (r) =>
              r.headers.length ? (
                <ul class="headers">
                  {r.headers.map((h) => (
                    <li>
                      <code>{h.key}</code>: {decodeBytes(fromBase64(h.value), "text").text}
                    </li>
                  ))}
                </ul>
              ) : (
                ""
              ),
          },
        ]}
        rows={page ? page.records : []}
        empty={loading ? "Loading…" : "No messages in this range."}
      />
      <Produce topic={topic} onProduced={load} />
    </div>
  );
}

function Produce({ topic, onProduced }) {
  const [key, setKey] = useState("");
  const [value, setValue] = useState("");
  const [headers, setHeaders] = useState("");
  const [partition, setPartition] = useState("");
  const [status, setStatus] = useState(null);
  const send = async (e) => {
    e.preventDefault();
    const hs = {};
    for (const line of headers.split("\n")) {
      if (!line.trim()) continue;
      const i = line.indexOf("=");
      if (i < 0) {
        setStatus({ kind: "error", text: `A header is name=value (got "${line}").` });
        return;
      }
      hs[line.slice(0, i).trim()] = line.slice(i + 1);
    }
    const body = { value, headers: hs };
    if (key !== "") body.key = key;
    if (partition !== "") body.partition = Number(partition);
    try {
      const r = await api("POST", `/v1/topics/${encodeURIComponent(topic.name)}/records`, body);
      setStatus({ kind: "info", text: `Produced to partition ${r.partition} at offset ${r.offset}.` });
      onProduced();
    } catch (err) {
      setStatus({ kind: "error", text: err.message });
    }
  };
  return (
    <details class="panel" open>
      <summary>Produce a test message</summary>
      <form class="produce" onSubmit={send} aria-label="Produce a message">
        <Field label="Key (optional)">
          <input name="key" value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        </Field>
        <Field label="Partition">
          <select value={partition} onChange={(e) => setPartition(e.currentTarget.value)}>
            <option value="">by key (or any)</option>
            {topic.partitions.map((p) => (
              <option value={String(p.partition)}>{p.partition}</option>
            ))}
          </select>
        </Field>
        <Field label="Value">
          <textarea name="value" rows="3" value={value} onInput={(e) => setValue(e.currentTarget.value)} />
        </Field>
        <Field label="Headers (name=value per line)">
          <textarea name="headers" rows="2" value={headers} onInput={(e) => setHeaders(e.currentTarget.value)} />
        </Field>
        <div>
          <button type="submit">Produce</button>
        </div>
      </form>
      {status && <Notice kind={status.kind}>{status.text}</Notice>}
    </details>
  );
}
