import { useEffect, useState } from "preact/hooks";
import { api, usePoll, useHistory, formatNumber } from "./api.js";
import { Badge, Chart, Field, Notice, Table } from "./ui.jsx";

function stateBadge(state) {
  const kind = state === "Stable" ? "good" : state === "Empty" ? "neutral" : state === "Dead" ? "bad" : "warn";
  return <Badge kind={kind}>{state}</Badge>;
}

export function Groups() {
  const groups = usePoll("/v1/groups", 3000);
  return (
    <section aria-labelledby="groups-title">
      <h1 id="groups-title">Consumer groups</h1>
      <Notice kind="error">{groups.error}</Notice>
      <Table
        testid="groups"
        rowKey={(g) => g.group_id}
        columns={[
          { key: "group_id", label: "Group", render: (g) => <a href={`#/groups/${encodeURIComponent(g.group_id)}`}>{g.group_id}</a> },
          { key: "type", label: "Type" },
          { key: "protocol_type", label: "Protocol type" },
          { key: "state", label: "State", render: (g) => stateBadge(g.state) },
        ]}
        rows={groups.data || []}
        empty={groups.loading ? "Loading…" : "No consumer groups."}
      />
    </section>
  );
}

export function GroupDetail({ id }) {
  const group = usePoll(`/v1/groups/${encodeURIComponent(id)}`, 2000);
  const [history, push, clear] = useHistory(90);
  useEffect(() => clear(), [id]);
  useEffect(() => {
    const g = group.data;
    if (!g) return;
    const total = g.offsets.reduce((sum, o) => sum + (o.lag || 0), 0);
    push({ t: Date.now(), v: total });
  }, [group.data]);
  const g = group.data;
  const totalLag = g ? g.offsets.reduce((sum, o) => sum + (o.lag || 0), 0) : null;
  return (
    <section aria-labelledby="group-title">
      <p class="crumbs">
        <a href="#/groups">Consumer groups</a> /
      </p>
      <h1 id="group-title">{id}</h1>
      <Notice kind="error">{group.error}</Notice>
      {g && (
        <p class="subtle">
          {stateBadge(g.state)} · {g.type} group · protocol {g.protocol || "–"}
          {g.group_epoch != null && <> · epoch {g.group_epoch}</>} · {g.members.length} member(s) · total lag{" "}
          <strong data-testid="total-lag">{formatNumber(totalLag)}</strong>
        </p>
      )}
      <div class="charts">
        <Chart title="Total lag (messages)" testid="lag-chart" format={(v) => formatNumber(v)} series={[{ label: "lag", points: history }]} />
      </div>
      <h2>Lag per partition</h2>
      <Table
        testid="group-offsets"
        rowKey={(o) => `${o.topic}-${o.partition}`}
        columns={[
          { key: "topic", label: "Topic", render: (o) => <a href={`#/topics/${encodeURIComponent(o.topic)}`}>{o.topic}</a> },
          { key: "partition", label: "Partition", numeric: true },
          { key: "committed_offset", label: "Committed", numeric: true, render: (o) => formatNumber(o.committed_offset) },
          { key: "log_end_offset", label: "Log end", numeric: true, render: (o) => formatNumber(o.log_end_offset) },
          { key: "lag", label: "Lag", numeric: true, render: (o) => (o.lag > 0 ? <strong>{formatNumber(o.lag)}</strong> : formatNumber(o.lag)) },
          { key: "member_id", label: "Member", render: (o) => (o.member_id ? <code>{o.member_id}</code> : "–") },
        ]}
        rows={g ? g.offsets : []}
        empty="No committed offsets or assignments."
      />
      <h2>Members</h2>
      <Table
        testid="members"
        rowKey={(m) => m.member_id}
        columns={[
          { key: "member_id", label: "Member", render: (m) => <code>{m.member_id}</code> },
          { key: "group_instance_id", label: "Instance" },
          { key: "client_id", label: "Client" },
          { key: "client_host", label: "Host" },
          {
            key: "assignment",
            label: "Assignment",
            render: (m) => m.assignment.map((a) => `${a.topic}: ${a.partitions.join(", ")}`).join("; ") || "–",
          },
        ]}
        rows={g ? g.members : []}
        empty="No members."
      />
      {g && <ResetOffsets group={g} onDone={group.reload} />}
    </section>
  );
}

function ResetOffsets({ group, onDone }) {
  const topics = [...new Set(group.offsets.map((o) => o.topic))];
  const [topic, setTopic] = useState(topics[0] || "");
  const [to, setTo] = useState("earliest");
  const [value, setValue] = useState("");
  const [status, setStatus] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    const body = { topic };
    if (to === "offset") body.offset = Number(value);
    else if (to === "timestamp") body.timestamp = new Date(value).getTime();
    else body.to = to;
    try {
      const r = await api("POST", `/v1/groups/${encodeURIComponent(group.group_id)}/offsets`, body);
      setStatus({ kind: "info", text: `Reset ${r.offsets.length} partition(s) of ${r.topic}.` });
      onDone();
    } catch (err) {
      setStatus({ kind: "error", text: err.message });
    }
  };
  return (
    <details class="panel">
      <summary>Reset offsets</summary>
      <p class="subtle">Only a group without active members can be reset.</p>
      <form class="form-row" onSubmit={submit} aria-label="Reset offsets">
        <Field label="Topic">
          <input required value={topic} onInput={(e) => setTopic(e.currentTarget.value)} list="group-topics" />
        </Field>
        <datalist id="group-topics">
          {topics.map((t) => (
            <option value={t} />
          ))}
        </datalist>
        <Field label="To">
          <select value={to} onChange={(e) => setTo(e.currentTarget.value)}>
            <option value="earliest">earliest</option>
            <option value="latest">latest</option>
            <option value="offset">offset…</option>
            <option value="timestamp">time…</option>
          </select>
        </Field>
        {to === "offset" && (
          <Field label="Offset">
            <input type="number" min="0" required value={value} onInput={(e) => setValue(e.currentTarget.value)} />
          </Field>
        )}
        {to === "timestamp" && (
          <Field label="Time (local)">
            <input type="datetime-local" step="1" required value={value} onInput={(e) => setValue(e.currentTarget.value)} />
          </Field>
        )}
        <button type="submit">Reset</button>
      </form>
      {status && <Notice kind={status.kind}>{status.text}</Notice>}
    </details>
  );
}
