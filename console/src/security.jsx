import { usePoll } from "./api.js";
import { Badge, Notice, Table } from "./ui.jsx";

export function Security() {
  const acls = usePoll("/v1/acls", 5000);
  const quotas = usePoll("/v1/quotas", 5000);
  const txns = usePoll("/v1/transactions", 5000);
  return (
    <section aria-labelledby="security-title">
      <h1 id="security-title">ACLs, quotas and transactions</h1>
      <Notice kind="error">{acls.error || quotas.error || txns.error}</Notice>
      <h2>ACLs</h2>
      {acls.data && !acls.data.authorizer && (
        <p class="subtle">
          <Badge kind="warn">no authorizer</Badge> The broker does not enforce ACLs (set <code>authorizer.class.name</code>);
          the ACLs below are stored but not checked.
        </p>
      )}
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
        ]}
        rows={acls.data ? acls.data.acls : []}
        empty="No ACLs."
      />
      <h2>Client quotas</h2>
      <Table
        testid="quotas"
        columns={[
          {
            key: "entity",
            label: "Entity",
            render: (q) => q.entity.map((e) => `${e.type}=${e.name == null ? "<default>" : e.name}`).join(", "),
          },
          {
            key: "values",
            label: "Quotas",
            render: (q) =>
              Object.entries(q.values)
                .map(([k, v]) => `${k}=${v}`)
                .join(", "),
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
