import { useEffect, useRef } from "preact/hooks";
import { usePoll, useHistory, formatBytes, formatNumber } from "./api.js";
import { Chart, Notice, Table, Tile, Badge } from "./ui.jsx";

// Cluster rates between two /v1/stats?scope=cluster samples: each node's own rate from its
// own two summaries, summed over the nodes in both (a node that missed one sample, or
// restarted and counts from zero again, adds nothing rather than a drop or a spike).
function rates(prev, cur) {
  const before = new Map(prev.nodes.map((n) => [n.node_id, n]));
  const r = { t: cur.time_ms, bytesIn: 0, bytesOut: 0, messagesIn: 0 };
  let counted = 0;
  for (const n of cur.nodes) {
    const p = before.get(n.node_id);
    const dt = p ? (n.time_ms - p.time_ms) / 1000 : 0;
    if (dt <= 0) continue;
    const d = (k) => Math.max(0, n[k] - p[k]) / dt;
    r.bytesIn += d("bytes_in");
    r.bytesOut += d("bytes_out");
    r.messagesIn += d("messages_in");
    counted++;
  }
  return counted ? r : null;
}

export function Overview() {
  const cluster = usePoll("/v1/cluster", 5000);
  const stats = usePoll("/v1/stats?scope=cluster", 2000);
  const [history, push] = useHistory(90);
  const last = useRef(null);
  useEffect(() => {
    const s = stats.data;
    if (!s) return;
    if (last.current && last.current.time_ms !== s.time_ms) {
      const r = rates(last.current, s);
      if (r) push(r);
    }
    last.current = s;
  }, [stats.data]);
  const s = stats.data && stats.data.totals;
  const missing = (stats.data && stats.data.missing) || [];
  const c = cluster.data;
  return (
    <section aria-labelledby="overview-title">
      <h1 id="overview-title">Overview</h1>
      <Notice kind="error">{stats.error || cluster.error}</Notice>
      {missing.length > 0 && (
        <Notice kind="error">
          Not counted: {missing.map((m) => `node ${m.node_id ?? "?"} (${m.reason})`).join("; ")}.
        </Notice>
      )}
      {c && (
        <p class="subtle">
          Cluster <code>{c.cluster_id}</code> · this node <strong>{c.node_id}</strong> · active controller{" "}
          <strong>{c.controller_id}</strong>
        </p>
      )}
      {s && (
        <div class="tiles" data-testid="health">
          <Tile label="Topics" value={formatNumber(s.topics)} />
          <Tile label="Partition replicas" value={formatNumber(s.partitions)} />
          <Tile label="Leaders" value={formatNumber(s.leaders)} />
          <Tile label="Under-replicated" value={formatNumber(s.under_replicated)} warn={s.under_replicated > 0} testid="under-replicated" />
          <Tile label="Under min ISR" value={formatNumber(s.under_min_isr)} warn={s.under_min_isr > 0} />
          <Tile label="Offline" value={formatNumber(s.offline)} warn={s.offline > 0} />
          <Tile label="Connections" value={formatNumber(s.connections)} />
          <Tile label="Log size (all replicas)" value={formatBytes(s.log_bytes)} />
        </div>
      )}
      <div class="charts">
        <Chart
          title="Throughput (cluster), bytes/s"
          testid="throughput-chart"
          format={(v) => `${formatBytes(v)}/s`}
          series={[
            { label: "in", points: history.map((p) => ({ t: p.t, v: p.bytesIn })) },
            { label: "out", points: history.map((p) => ({ t: p.t, v: p.bytesOut })) },
          ]}
        />
        <Chart
          title="Messages in (cluster), per second"
          testid="messages-chart"
          format={(v) => formatNumber(v)}
          series={[{ label: "messages", points: history.map((p) => ({ t: p.t, v: p.messagesIn })) }]}
        />
      </div>
      <h2>Brokers</h2>
      <Table
        testid="brokers"
        rowKey={(b) => b.node_id}
        columns={[
          { key: "node_id", label: "Node", numeric: true, render: (b) => <a href={`#/brokers/${b.node_id}`}>{b.node_id}</a> },
          { key: "host", label: "Host", render: (b) => (b.host ? `${b.host}:${b.port}` : "this node (standalone)") },
          { key: "rack", label: "Rack" },
          {
            key: "role",
            label: "Role",
            render: (b) => (c && b.node_id === c.controller_id ? <Badge kind="info">controller</Badge> : "broker"),
          },
          { key: "fenced", label: "State", render: (b) => (b.fenced ? <Badge kind="bad">fenced</Badge> : <Badge kind="good">live</Badge>) },
          {
            key: "http",
            label: "Console",
            render: (b) => (b.http ? <a href={`http://${b.http}/`}>{c && b.node_id === c.node_id ? "this one" : b.http}</a> : "—"),
          },
        ]}
        rows={c ? c.brokers : []}
        empty={cluster.loading ? "Loading…" : "No brokers."}
      />
    </section>
  );
}
