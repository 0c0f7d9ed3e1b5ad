import { useRef, useState } from "preact/hooks";
import { api } from "./api.js";
import { Field, Notice, Table } from "./ui.jsx";

const EXAMPLE = "SHOW STREAMS;";

// A JSON value as a cell.
function cell(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// One entity of /ksql's answer: its first list of objects as a table, else its message.
function Entity({ entity }) {
  const type = entity["@type"];
  const list = Object.entries(entity).find(([, v]) => Array.isArray(v) && v.length && typeof v[0] === "object");
  if (entity.commandStatus) {
    return <Notice kind={entity.commandStatus.status === "ERROR" ? "error" : "info"}>{entity.commandStatus.message}</Notice>;
  }
  if (type && type.endsWith("error")) return <Notice kind="error">{entity.message}</Notice>;
  if (list) {
    const [name, rows] = list;
    const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    return (
      <Table
        caption={`${entity.statementText || ""} (${name})`}
        columns={keys.map((k) => ({ key: k, label: k, render: (r) => cell(r[k]) }))}
        rows={rows}
      />
    );
  }
  const emptyList = Object.entries(entity).find(([, v]) => Array.isArray(v));
  if (emptyList) return <p class="subtle">{entity.statementText}: no {emptyList[0]}.</p>;
  return <pre class="json">{JSON.stringify(entity, null, 2)}</pre>;
}

export function Sql() {
  const [text, setText] = useState(EXAMPLE);
  const [reset, setReset] = useState("earliest");
  const [entities, setEntities] = useState(null);
  const [result, setResult] = useState(null); // { columns, rows, queryId, state }
  const [error, setError] = useState(null);
  const [running, setRunning] = useState(false);
  const abort = useRef(null);

  const stop = async () => {
    const r = result;
    if (abort.current) abort.current.abort();
    abort.current = null;
    setRunning(false);
    setResult((x) => x && { ...x, state: "stopped" });
    if (r && r.queryId) {
      try {
        await api("POST", "/v1/sql/close-query", { queryId: r.queryId });
      } catch {}
    }
  };

  const query = async (sql) => {
    const controller = new AbortController();
    abort.current = controller;
    setResult({ columns: [], rows: [], queryId: null, state: "starting" });
    const r = await fetch("/v1/sql/query-stream", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/vnd.ksqlapi.delimited.v1" },
      body: JSON.stringify({ sql, properties: { "auto.offset.reset": reset } }),
      signal: controller.signal,
    });
    if (!r.ok) {
      const body = await r.text();
      let message = body;
      try {
        message = JSON.parse(body).message || body;
      } catch {}
      throw new Error(message);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    let header = null;
    const push = /\bEMIT\s+CHANGES\b/i.test(sql);
    setResult({ columns: [], rows: [], queryId: null, state: push ? "streaming" : "running" });
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let nl;
      const rows = [];
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!line) continue;
        const item = JSON.parse(line);
        if (Array.isArray(item)) rows.push(item);
        else if (item.columnNames) header = item;
        else if (item.message) throw new Error(item.message);
      }
      if (header || rows.length) {
        const h = header;
        setResult((x) => ({
          columns: h ? h.columnNames : x.columns,
          queryId: h ? h.queryId : x.queryId,
          rows: [...x.rows, ...rows].slice(-1000),
          state: x.state,
        }));
      }
    }
    setResult((x) => x && { ...x, state: x.state === "stopped" ? "stopped" : "done" });
  };

  const run = async (e) => {
    if (e) e.preventDefault();
    if (running) await stop();
    setError(null);
    setEntities(null);
    setResult(null);
    const sql = text.trim();
    if (!sql) return;
    setRunning(true);
    try {
      if (/^select\b/i.test(sql)) {
        await query(sql);
      } else {
        setEntities(await api("POST", "/v1/sql/ksql", { ksql: sql, streamsProperties: { "auto.offset.reset": reset } }));
      }
    } catch (err) {
      if (err.name !== "AbortError") setError(err.message);
    } finally {
      abort.current = null;
      setRunning(false);
    }
  };

  return (
    <section aria-labelledby="sql-title">
      <h1 id="sql-title">SQL</h1>
      <p class="subtle">
        ksqlDB's language: <code>CREATE STREAM</code>/<code>TABLE</code>, <code>INSERT</code>, <code>SHOW</code>,{" "}
        <code>DESCRIBE</code>, pull queries, and push queries (<code>EMIT CHANGES</code>) whose rows stream in as they
        arrive. Ctrl+Enter runs.
      </p>
      <form onSubmit={run} aria-label="SQL editor">
        <Field label="Statement">
          <textarea
            class="editor"
            name="sql"
            rows="6"
            spellcheck={false}
            value={text}
            onInput={(e) => setText(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(e);
            }}
          />
        </Field>
        <div class="form-row">
          <Field label="auto.offset.reset">
            <select value={reset} onChange={(e) => setReset(e.currentTarget.value)}>
              <option value="earliest">earliest</option>
              <option value="latest">latest</option>
            </select>
          </Field>
          <button type="submit">Run</button>
          <button type="button" onClick={stop} disabled={!running}>
            Stop
          </button>
          {result && (
            <span class="subtle" role="status" data-testid="query-state">
              {result.state} · {result.rows.length} row(s)
            </span>
          )}
        </div>
      </form>
      <Notice kind="error">{error}</Notice>
      {entities && entities.map((en) => <Entity entity={en} />)}
      {result && (
        <Table
          testid="query-rows"
          columns={result.columns.map((c, i) => ({ key: String(i), label: c, render: (r) => cell(r[i]) }))}
          rows={result.rows}
          empty={result.state === "streaming" ? "Waiting for rows…" : "No rows."}
        />
      )}
    </section>
  );
}
