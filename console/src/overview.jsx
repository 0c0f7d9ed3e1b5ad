import { useEffect, useRef } from "preact/hooks";
import { usePoll, useHistory, formatBytes, formatNumber } from "./api.js";
import { Chart, Notice, Table, Tile, Badge } from "./ui.jsx";

// Rates between two /v1/stats samples.
function rates(prev, cur) {
  const dt = (cur.time_ms - prev.time_ms) / 1000;
  if (dt <= 0) return null;
  const d = (k) => Math.max(0, cur[k] - prev[k]) / dt;
  return { t: cur.time_ms, bytesIn: d("bytes_in"), bytesOut: d("bytes_out"), messagesIn: d("messages_in") };
}

export function Overview() {
  const cluster = usePoll("/v1/cluster", 5000);
  const stats = usePoll("/v1/stats", 2000);
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
  const s = stats.data;
  const c = cluster.data;
  return (
    <section aria-labelledby="overview-title">
      <h1 id="overview-title">Overview</h1>
      <Notice kind="error">{stats.error || cluster.error}</Notice>
      {c && (
        <p class="subtle">
          Cluster <code>{c.cluster_id}</code> · this node <strong>{c.node_id}</strong> · active controller{" "}
          <strong>{c.controller_id}</strong>
        </p>
      )}
      {s && (
        <div class="tiles" data-testid="health">
          <Tile label="Topics" value={formatNumber(s.topics)} />
          <Tile label="Partitions on this node" value={formatNumber(s.partitions)} />
          <Tile label="Leaders on this node" value={formatNumber(s.leaders)} />
          <Tile label="Under-replicated" value={formatNumber(s.under_replicated)} warn={s.under_replicated > 0} testid="under-replicated" />
          <Tile label="Under min ISR" value={formatNumber(s.under_min_isr)} warn={s.under_min_isr > 0} />
          <Tile label="Offline (cluster)" value={formatNumber(s.offline)} warn={s.offline > 0} />
          <Tile label="Connections" value={formatNumber(s.connections)} />
          <Tile label="Log size on this node" value={formatBytes(s.log_bytes)} />
        </div>
      )}
      <div class="charts">
        <Chart
          title="Throughput (this node), bytes/s"
          testid="throughput-chart"
          format={(v) => `${formatBytes(v)}/s`}
          series={[
            { label: "in", points: history.map((p) => ({ t: p.t, v: p.bytesIn })) },
            { label: "out", points: history.map((p) => ({ t: p.t, v: p.bytesOut })) },
          ]}
        />
        <Chart
          title="Messages in (this node), per second"
          format={(v) => formatNumber(v)}
          series={[{ label: "messages", points: history.map((p) => ({ t: p.t, v: p.messagesIn })) }]}
        />
      </div>
      <h2>Brokers</h2>
      <Table
        testid="brokers"
        rowKey={(b) => b.node_id}
        columns={[
          { key: "node_id", label: "Node", numeric: true },
          { key: "host", label: "Host", render: (b) => (b.host ? `${b.host}:${b.port}` : "this node (standalone)") },
          { key: "rack", label: "Rack" },
          {
            key: "role",
            label: "Role",
            render: (b) => (c && b.node_id === c.controller_id ? <Badge kind="info">controller</Badge> : "broker"),
          },
          { key: "fenced", label: "State", render: (b) => (b.fenced ? <Badge kind="bad">fenced</Badge> : <Badge kind="good">live</Badge>) },
        ]}
        rows={c ? c.brokers : []}
        empty={cluster.loading ? "Loading…" : "No brokers."}
      />
    </section>
  );
}
