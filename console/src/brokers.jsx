import { useState } from "preact/hooks";
import { api, usePoll } from "./api.js";
import { Badge, Field, Notice, Table } from "./ui.jsx";

// Where a value comes from, as Kafka's ConfigSource names it, in words.
const SOURCES = {
  DYNAMIC_BROKER_CONFIG: ["this broker, set at runtime", "info"],
  DYNAMIC_DEFAULT_BROKER_CONFIG: ["every broker, set at runtime", "info"],
  STATIC_BROKER_CONFIG: ["config file", "neutral"],
  DEFAULT_CONFIG: ["default", "neutral"],
};

function Source({ source }) {
  const [text, kind] = SOURCES[source] || [source, "neutral"];
  return <Badge kind={kind}>{text}</Badge>;
}

// Sets a dynamic config for this broker or for every broker (the cluster-wide default).
function SetConfig({ id, names, onDone }) {
  const [name, setName] = useState(names[0] || "");
  const [value, setValue] = useState("");
  const [scope, setScope] = useState("this");
  const [status, setStatus] = useState(null);
  const target = scope === "every" ? "default" : id;
  const send = async (configs, what) => {
    setStatus(null);
    try {
      await api("PATCH", `/v1/brokers/${encodeURIComponent(target)}/configs`, { configs });
      setStatus({ kind: "info", text: what });
      onDone();
    } catch (e) {
      setStatus({ kind: "error", text: e.message });
    }
  };
  const where = scope === "every" ? "every broker" : `broker ${id}`;
  return (
    <>
      <form
        class="form-row"
        aria-label="Change a broker config"
        onSubmit={(e) => {
          e.preventDefault();
          send({ [name]: value }, `Set ${name}=${value} for ${where}.`);
        }}
      >
        <Field label="Config">
          <select name="config-name" value={name} onChange={(e) => setName(e.currentTarget.value)}>
            {names.map((n) => (
              <option value={n}>{n}</option>
            ))}
          </select>
        </Field>
        <Field label="Value">
          <input name="config-value" required value={value} onInput={(e) => setValue(e.currentTarget.value)} />
        </Field>
        <Field label="For">
          <select name="config-scope" value={scope} onChange={(e) => setScope(e.currentTarget.value)}>
            <option value="this">this broker</option>
            <option value="every">every broker</option>
          </select>
        </Field>
        <button type="submit">Set</button>
        <button type="button" class="secondary" onClick={() => send({ [name]: null }, `Removed the value of ${name} set for ${where}.`)}>
          Remove the value set
        </button>
      </form>
      {status && <Notice kind={status.kind}>{status.text}</Notice>}
    </>
  );
}

export function BrokerDetail({ id }) {
  const configs = usePoll(`/v1/brokers/${encodeURIComponent(id)}/configs`, 10000);
  const [filter, setFilter] = useState("");
  const rows = configs.data ? configs.data.configs : [];
  const dynamic = rows.filter((c) => !c.read_only).map((c) => c.name);
  const shown = rows.filter((c) => c.name.includes(filter.trim()));
  return (
    <section aria-labelledby="broker-title">
      <p class="crumbs">
        <a href="#/">Overview</a> /
      </p>
      <h1 id="broker-title">Broker {id}</h1>
      <Notice kind="error">{configs.error}</Notice>
      {dynamic.length > 0 && (
        <details class="panel">
          <summary>Change a config at runtime</summary>
          <SetConfig id={id} names={dynamic} onDone={configs.reload} />
        </details>
      )}
      <div class="form-row">
        <Field label="Filter configs">
          <input name="config-filter" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
        </Field>
      </div>
      <Table
        testid="broker-configs"
        rowKey={(c) => c.name}
        columns={[
          { key: "name", label: "Config", render: (c) => <code>{c.name}</code> },
          { key: "value", label: "Value", render: (c) => (c.sensitive ? <em>hidden</em> : <code>{c.value}</code>) },
          { key: "source", label: "From", render: (c) => <Source source={c.source} /> },
          { key: "read_only", label: "Changes", render: (c) => (c.read_only ? "at restart" : "at runtime") },
        ]}
        rows={shown}
        empty={configs.loading ? "Loading…" : "No configs."}
      />
    </section>
  );
}
