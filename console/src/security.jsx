import { useState } from "preact/hooks";
import { api, usePoll } from "./api.js";
import { Badge, Field, Notice, Table } from "./ui.jsx";

const RESOURCE_TYPES = ["TOPIC", "GROUP", "TRANSACTIONAL_ID", "CLUSTER"];
const OPERATIONS = [
  "READ",
  "WRITE",
  "CREATE",
  "DELETE",
  "ALTER",
  "DESCRIBE",
  "CLUSTER_ACTION",
  "DESCRIBE_CONFIGS",
  "ALTER_CONFIGS",
  "IDEMPOTENT_WRITE",
  "ALL",
];
const QUOTA_KEYS = ["producer_byte_rate", "consumer_byte_rate", "request_percentage", "controller_mutation_rate", "connection_creation_rate"];

// A form's outcome: a message under it, and the polled lists reloaded on success.
function useOutcome(reload) {
  const [status, setStatus] = useState(null);
  const run = async (what, action) => {
    setStatus(null);
    try {
      await action();
      setStatus({ kind: "info", text: what });
      reload.forEach((r) => r());
      return true;
    } catch (e) {
      setStatus({ kind: "error", text: e.message });
      return false;
    }
  };
  const notice = status && <Notice kind={status.kind}>{status.text}</Notice>;
  return [run, notice];
}

function select(value, set, options, name) {
  return (
    <select name={name} value={value} onChange={(e) => set(e.currentTarget.value)}>
      {options.map((o) => (
        <option value={o}>{o}</option>
      ))}
    </select>
  );
}

function AddAcl({ run }) {
  const [principal, setPrincipal] = useState("User:");
  const [resourceType, setResourceType] = useState("TOPIC");
  const [resourceName, setResourceName] = useState("");
  const [pattern, setPattern] = useState("LITERAL");
  const [operation, setOperation] = useState("READ");
  const [permission, setPermission] = useState("ALLOW");
  const [host, setHost] = useState("*");
  const submit = async (e) => {
    e.preventDefault();
    const body = {
      principal: principal.trim(),
      resource_type: resourceType,
      resource_name: resourceType === "CLUSTER" ? "kafka-cluster" : resourceName.trim(),
      pattern_type: pattern,
      operation,
      permission,
      host: host.trim() || "*",
    };
    await run(`Added: ${body.permission} ${body.principal} ${body.operation} on ${body.resource_type} ${body.resource_name}.`, () =>
      api("POST", "/v1/acls", body),
    );
  };
  return (
    <form class="form-row" onSubmit={submit} aria-label="Add an ACL">
      <Field label="Principal">
        <input name="principal" required value={principal} onInput={(e) => setPrincipal(e.currentTarget.value)} />
      </Field>
      <Field label="Permission">{select(permission, setPermission, ["ALLOW", "DENY"], "permission")}</Field>
      <Field label="Operation">{select(operation, setOperation, OPERATIONS, "operation")}</Field>
      <Field label="Resource type">{select(resourceType, setResourceType, RESOURCE_TYPES, "resource-type")}</Field>
      <Field label="Resource name" hint={resourceType === "CLUSTER" ? "the cluster" : "* for all"}>
        <input
          name="resource-name"
          required={resourceType !== "CLUSTER"}
          disabled={resourceType === "CLUSTER"}
          value={resourceType === "CLUSTER" ? "kafka-cluster" : resourceName}
          onInput={(e) => setResourceName(e.currentTarget.value)}
        />
      </Field>
      <Field label="Pattern">{select(pattern, setPattern, ["LITERAL", "PREFIXED"], "pattern")}</Field>
      <Field label="Host">
        <input name="host" value={host} onInput={(e) => setHost(e.currentTarget.value)} />
      </Field>
      <button type="submit">Add ACL</button>
    </form>
  );
}

function removeAcl(a) {
  const q = new URLSearchParams({
    resource_type: a.resource_type,
    resource_name: a.resource_name,
    pattern_type: a.pattern_type,
    principal: a.principal,
    host: a.host,
    operation: a.operation,
    permission: a.permission,
  });
  return api("DELETE", `/v1/acls?${q}`);
}

function SetUser({ run }) {
  const [name, setName] = useState("");
  const [mechanism, setMechanism] = useState("SCRAM-SHA-256");
  const [password, setPassword] = useState("");
  const submit = async (e) => {
    e.preventDefault();
    const user = name.trim();
    const ok = await run(`Saved ${mechanism} credentials of ${user}.`, () =>
      api("PUT", `/v1/users/${encodeURIComponent(user)}`, { mechanism, password }),
    );
    if (ok) setPassword("");
  };
  return (
    <form class="form-row" onSubmit={submit} aria-label="Add or change a SCRAM user">
      <Field label="User name">
        <input name="user-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </Field>
      <Field label="Mechanism">{select(mechanism, setMechanism, ["SCRAM-SHA-256", "SCRAM-SHA-512"], "mechanism")}</Field>
      <Field label="Password">
        <input name="password" type="password" autocomplete="new-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      </Field>
      <button type="submit">Save user</button>
    </form>
  );
}

function SetQuota({ run }) {
  const [kind, setKind] = useState("user");
  const [name, setName] = useState("");
  const [key, setKey] = useState("producer_byte_rate");
  const [value, setValue] = useState("");
  const submit = async (e) => {
    e.preventDefault();
    const entity = [{ type: kind, name: name.trim() === "" ? null : name.trim() }];
    const who = `${kind}=${entity[0].name ?? "<default>"}`;
    await run(`Set ${key}=${value} for ${who}.`, () => api("PUT", "/v1/quotas", { entity, set: { [key]: Number(value) } }));
  };
  return (
    <form class="form-row" onSubmit={submit} aria-label="Set a client quota">
      <Field label="Entity type">{select(kind, setKind, ["user", "client-id", "ip"], "entity-type")}</Field>
      <Field label="Entity name" hint="empty: the default">
        <input name="entity-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </Field>
      <Field label="Quota">{select(key, setKey, QUOTA_KEYS, "quota-key")}</Field>
      <Field label="Value">
        <input name="quota-value" type="number" min="0" step="any" required value={value} onInput={(e) => setValue(e.currentTarget.value)} />
      </Field>
      <button type="submit">Set quota</button>
    </form>
  );
}

const entityText = (q) => q.entity.map((e) => `${e.type}=${e.name == null ? "<default>" : e.name}`).join(", ");

export function Security() {
  const acls = usePoll("/v1/acls", 5000);
  const users = usePoll("/v1/users", 5000);
  const quotas = usePoll("/v1/quotas", 5000);
  const txns = usePoll("/v1/transactions", 5000);
  const [runAcl, aclNotice] = useOutcome([acls.reload]);
  const [runUser, userNotice] = useOutcome([users.reload]);
  const [runQuota, quotaNotice] = useOutcome([quotas.reload]);
  return (
    <section aria-labelledby="security-title">
      <h1 id="security-title">ACLs, users, quotas and transactions</h1>
      <Notice kind="error">{acls.error || quotas.error || txns.error}</Notice>
      <h2>ACLs</h2>
      {acls.data && !acls.data.authorizer && (
        <p class="subtle">
          <Badge kind="warn">no authorizer</Badge> The broker does not enforce ACLs (set <code>authorizer.class.name</code>);
          it refuses to store them.
        </p>
      )}
      <details class="panel">
        <summary>Add an ACL</summary>
        <AddAcl run={runAcl} />
      </details>
      {aclNotice}
      <Table
        testid="acls"
        columns={[
          { key: "principal", label: "Principal" },
          { key: "host", label: "Host" },
          { key: "permission", label: "Permission", render: (a) => <Badge kind={a.permission === "ALLOW" ? "good" : "bad"}>{a.permission}</Badge> },
          { key: "operation", label: "Operation" },
          { key: "resource_type", label: "Resource" },
          { key: "resource_name", label: "Name", render: (a) => <code>{a.resource_name}</code> },
          { key: "pattern_type", label: "Pattern" },
          {
            key: "remove",
            label: "Remove",
            render: (a) => (
              <button
                class="danger small"
                aria-label={`Remove ${a.permission} ${a.principal} ${a.operation} on ${a.resource_type} ${a.resource_name}`}
                onClick={() => confirm(`Remove this ACL of ${a.principal}?`) && runAcl("ACL removed.", () => removeAcl(a))}
              >
                Remove
              </button>
            ),
          },
        ]}
        rows={acls.data ? acls.data.acls : []}
        empty="No ACLs."
      />
      <h2>SCRAM users</h2>
      <Notice kind="error">{users.error}</Notice>
      <details class="panel">
        <summary>Add or change a user</summary>
        <SetUser run={runUser} />
      </details>
      {userNotice}
      <Table
        testid="users"
        columns={[
          { key: "name", label: "User", render: (u) => <code>{u.name}</code> },
          {
            key: "credentials",
            label: "Mechanisms",
            render: (u) => u.credentials.map((c) => `${c.mechanism} (${c.iterations} iterations)`).join(", "),
          },
          {
            key: "remove",
            label: "Remove",
            render: (u) => (
              <button
                class="danger small"
                aria-label={`Remove user ${u.name}`}
                onClick={() =>
                  confirm(`Remove user ${u.name}? Their clients can no longer log in.`) &&
                  runUser(`User ${u.name} removed.`, () => api("DELETE", `/v1/users/${encodeURIComponent(u.name)}`))
                }
              >
                Remove
              </button>
            ),
          },
        ]}
        rows={users.data || []}
        empty="No SCRAM users."
      />
      <h2>Client quotas</h2>
      <details class="panel">
        <summary>Set a quota</summary>
        <SetQuota run={runQuota} />
      </details>
      {quotaNotice}
      <Table
        testid="quotas"
        columns={[
          { key: "entity", label: "Entity", render: entityText },
          {
            key: "values",
            label: "Quotas",
            render: (q) =>
              Object.entries(q.values)
                .map(([k, v]) => `${k}=${v}`)
                .join(", "),
          },
          {
            key: "remove",
            label: "Remove",
            render: (q) => (
              <button
                class="danger small"
                aria-label={`Remove the quotas of ${entityText(q)}`}
                onClick={() =>
                  runQuota(`Quotas of ${entityText(q)} removed.`, () =>
                    api("PUT", "/v1/quotas", { entity: q.entity, remove: Object.keys(q.values) }),
                  )
                }
              >
                Remove
              </button>
            ),
          },
        ]}
        rows={quotas.data || []}
        empty="No client quotas."
      />
      <h2>Transactions</h2>
      <Table
        testid="transactions"
        columns={[
          { key: "transactional_id", label: "Transactional id", render: (t) => <code>{t.transactional_id}</code> },
          { key: "producer_id", label: "Producer id", numeric: true },
          { key: "state", label: "State" },
          { key: "coordinator", label: "Coordinator", numeric: true },
        ]}
        rows={txns.data || []}
        empty="No transactional producers."
      />
    </section>
  );
}
