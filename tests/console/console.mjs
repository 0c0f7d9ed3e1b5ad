// Drives Strata's web console in Debian's headless Chromium (playwright-core, no browser
// download) the way a person would, against a running broker or cluster started by
// tests/integration/test_console.py, which passes what to expect in the environment:
//
//   CONSOLE_URL      the console (http://host:port/)
//   BROKERS          how many brokers the overview must list
//   GROUP, LAG       a consumer group the test left behind, and its total lag
//   SQL              "1": the SQL page runs a push query whose rows must arrive live
//   TOPIC            a name for the topic the console creates
//   REPLICATION      its replication factor
//   AUTHORIZER       "1": the broker enforces ACLs (and the console's caller may change them)
//   SCREENSHOTS      where each main page's screenshot goes (a test artifact)
//   CHROMIUM         the browser (default /usr/bin/chromium)
//
// Exits 0 when every step saw what it expected and every page screenshot passed axe-core's
// WCAG 2.1 AA rules (serious and critical findings); else prints the step and exits 1 (with
// a screenshot of the page as it was).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

// axe-core (Deque's accessibility rules, from npm) checks every page the run screenshots.
const axeScript = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const env = process.env;
const base = env.CONSOLE_URL.replace(/\/$/, "");
const shots = env.SCREENSHOTS || "console-screenshots";
const topic = env.TOPIC || `console-${Date.now()}`;
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));
page.setDefaultTimeout(30_000);

let step = "start";
const a11y = [];
async function shot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  await audit(name);
}
// WCAG 2.1 A and AA violations that axe rates serious or critical, by page.
async function audit(name) {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: axeScript });
  const found = await page.evaluate(() =>
    window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"], resultTypes: ["violations"] }),
  );
  for (const v of found.violations.filter((v) => v.impact === "serious" || v.impact === "critical")) {
    const where = v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ");
    a11y.push(`${name}: ${v.id} (${v.impact}): ${v.help} at ${where}`);
  }
}
function expect(cond, what) {
  if (!cond) throw new Error(what);
}
async function api(method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

try {
  step = "overview lists the brokers and partition health";
  await page.goto(`${base}/#/`);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  const brokers = page.getByTestId("brokers").locator("tbody tr");
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-testid="brokers"] tbody tr td.num').length === n,
    Number(env.BROKERS || 1),
  );
  expect((await brokers.count()) === Number(env.BROKERS || 1), "broker rows");
  await page.getByTestId("under-replicated").waitFor();
  // Two samples of /v1/stats make a throughput line.
  await page.waitForFunction(() => document.querySelector('[data-testid="throughput-chart"] polyline') !== null, null, {
    timeout: 15_000,
  });
  step = "a broker's configs are shown and one is changed at runtime";
  await page.getByTestId("brokers").getByRole("link", { name: "1", exact: true }).click();
  await page.getByRole("heading", { name: "Broker 1" }).waitFor();
  await page.getByLabel("Filter configs").fill("log.retention.ms");
  const retention = page.getByTestId("broker-configs").getByRole("row").filter({ hasText: "log.retention.ms" }).first();
  await retention.waitFor();
  await page.getByText("Change a config at runtime").click();
  const configForm = page.getByRole("form", { name: "Change a broker config" });
  await configForm.getByLabel("Config").selectOption("log.retention.ms");
  await configForm.getByLabel("Value").fill("5400000");
  await configForm.getByRole("button", { name: "Set", exact: true }).click();
  await retention.filter({ hasText: "5400000" }).filter({ hasText: "this broker, set at runtime" }).waitFor();
  await shot("broker");
  await configForm.getByRole("button", { name: "Remove the value set" }).click();
  await page.getByTestId("broker-configs").getByRole("row").filter({ hasText: "5400000" }).waitFor({ state: "detached" });
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Overview", exact: true }).click();
  await page.getByRole("heading", { name: "Overview" }).waitFor();

  // Every node's numbers are in (on a cluster, the peers' summaries over HTTP).
  const stats = await api("GET", "/v1/stats?scope=cluster");
  expect(stats.nodes.length === Number(env.BROKERS || 1) && stats.missing.length === 0, `stats: ${JSON.stringify(stats)}`);
  expect((await page.getByText("Not counted").count()) === 0, "a node was not counted");
  await shot("overview");

  step = "a topic is created from the topics page";
  await page.getByRole("link", { name: "Topics", exact: true }).click();
  await page.getByRole("heading", { name: "Topics" }).waitFor();
  await page.getByText("Create a topic").click();
  const create = page.getByRole("form", { name: "Create a topic" });
  await create.getByLabel("Name", { exact: true }).fill(topic);
  await create.getByLabel("Partitions", { exact: true }).fill("3");
  await create.getByLabel("Replication factor", { exact: true }).fill(env.REPLICATION || "1");
  await create.getByRole("button", { name: "Create" }).click();
  await page.getByText(`Created topic ${topic}.`).waitFor();
  await page.getByTestId("topics").getByRole("link", { name: topic, exact: true }).waitFor();
  await shot("topics");

  step = "a message produced from the topic page is seen in the message browser";
  await page.getByTestId("topics").getByRole("link", { name: topic, exact: true }).click();
  await page.getByRole("heading", { name: topic }).waitFor();
  const produce = page.getByRole("form", { name: "Produce a message" });
  await produce.getByLabel("Key (optional)", { exact: true }).fill("order-42");
  await produce.getByLabel("Value", { exact: true }).fill('{"hello":"console","n":42}');
  await produce.getByLabel("Headers (name=value per line)", { exact: true }).fill("source=playwright");
  await produce.getByRole("button", { name: "Produce" }).click();
  await page.getByText(/Produced to partition \d+ at offset \d+/).waitFor();
  const messages = page.getByTestId("messages");
  await messages.getByText('{"hello":"console","n":42}').waitFor();
  await messages.getByText("order-42").waitFor();
  await messages.getByText("source").waitFor();
  // Decoding: JSON pretty-printed, hex.
  const browse = page.getByRole("form", { name: "Browse messages" });
  await browse.getByLabel("Value as", { exact: true }).selectOption("json");
  await messages.locator("pre.cell-json").filter({ hasText: '"hello": "console"' }).waitFor();
  await browse.getByLabel("Value as", { exact: true }).selectOption("hex");
  await messages.getByText("7b 22 68 65 6c 6c 6f").waitFor();
  await browse.getByLabel("Value as", { exact: true }).selectOption("json");
  // Seek: from offset 0 of every partition, then from a time after the message (none).
  await browse.getByLabel("From", { exact: true }).selectOption("offset");
  await browse.getByLabel("Offset", { exact: true }).fill("0");
  await browse.getByRole("button", { name: "Load" }).click();
  await messages.getByText("order-42").waitFor();
  await shot("topic");
  await browse.getByLabel("From", { exact: true }).selectOption("timestamp");
  const future = new Date(Date.now() + 3_600_000);
  const local = new Date(future.getTime() - future.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
  await browse.getByLabel("Time (local)", { exact: true }).fill(local);
  await browse.getByRole("button", { name: "Load" }).click();
  await messages.getByText("No messages in this range.").waitFor();
  step = "the partitions tab shows leaders and replicas";
  await page.getByRole("tab", { name: "Partitions" }).click();
  await page.waitForFunction(
    () => document.querySelectorAll('[data-testid="partitions"] tbody tr').length === 3,
  );
  if (Number(env.BROKERS || 1) > 1) {
    step = "a partition is moved to two of its brokers and preferred leaders elected";
    const before = (await api("GET", `/v1/topics/${topic}`)).partitions[0].replicas;
    const target = [before[1], before[0]];
    const moveForm = page.getByRole("form", { name: "Move a partition" });
    await moveForm.getByLabel("Partition").selectOption("0");
    await moveForm.getByLabel("To brokers").fill(target.join(", "));
    await moveForm.getByRole("button", { name: "Move" }).click();
    await page.getByText(/Partition 0 is moving to brokers/).waitFor();
    await page.waitForFunction(
      (want) => document.querySelector('[data-testid="partitions"] tbody tr td:nth-child(4)')?.textContent === want,
      target.join(", "),
      { timeout: 60_000 },
    );
    await moveForm.getByRole("button", { name: "Elect preferred leaders" }).click();
    await page.getByText(/Preferred leaders: \d+ elected/).waitFor();
    await page.waitForFunction(
      (leader) => document.querySelector('[data-testid="partitions"] tbody tr td:nth-child(2)')?.textContent === leader,
      String(target[0]),
      { timeout: 30_000 },
    );
    await shot("partitions");
  }

  if (env.GROUP) {
    step = "the consumer group is listed and its lag shown";
    await page.getByRole("link", { name: "Consumer groups", exact: true }).click();
    await page.getByTestId("groups").getByRole("link", { name: env.GROUP, exact: true }).click();
    await page.getByRole("heading", { name: env.GROUP }).waitFor();
    await page.waitForFunction(
      (lag) => document.querySelector('[data-testid="total-lag"]')?.textContent === lag,
      Number(env.LAG).toLocaleString("en-US"),
    );
    // Two polls draw the lag line.
    await page.waitForFunction(() => document.querySelector('[data-testid="lag-chart"] polyline') !== null, null, {
      timeout: 15_000,
    });
    await shot("group");
  }

  if (env.SQL === "1") {
    step = "a SQL push query shows rows as they arrive";
    const source = `${topic}-sql`;
    await api("POST", "/v1/topics", { name: source, partitions: 1, replication_factor: Number(env.REPLICATION || 1) });
    await page.getByRole("link", { name: "SQL", exact: true }).click();
    const editor = page.getByLabel("Statement", { exact: true });
    const stream = `S_${topic.replace(/[^A-Za-z0-9]/g, "_").toUpperCase()}`;
    await editor.fill(
      `CREATE STREAM ${stream} (id INT, name VARCHAR) WITH (kafka_topic='${source}', value_format='JSON');`,
    );
    await page.getByRole("button", { name: "Run" }).click();
    await page.getByText(/Stream created/i).waitFor();
    await editor.fill(`SELECT id, name FROM ${stream} EMIT CHANGES;`);
    await page.getByRole("button", { name: "Run" }).click();
    await page.getByTestId("query-state").filter({ hasText: "streaming" }).waitFor();
    const rows = page.getByTestId("query-rows");
    await rows.getByRole("columnheader", { name: "ID" }).waitFor();
    for (let i = 1; i <= 3; i++) {
      await api("POST", `/v1/topics/${source}/records`, { value: JSON.stringify({ id: i, name: `row-${i}` }) });
      await rows.getByText(`row-${i}`).waitFor();
      // Each row arrives while the query runs, before the next is produced.
      await page.getByTestId("query-state").filter({ hasText: `streaming · ${i} row(s)` }).waitFor();
    }
    await shot("sql");
    await page.getByRole("button", { name: "Stop" }).click();
    await page.getByTestId("query-state").filter({ hasText: "stopped" }).waitFor();
  }

  step = "the ACLs, users and quotas page manages each";
  await page.getByRole("link", { name: "ACLs & quotas", exact: true }).click();
  await page.getByTestId("acls").waitFor();
  await page.getByTestId("quotas").waitFor();
  page.on("dialog", (d) => d.accept());
  const user = `${topic}-user`;
  // A SCRAM user.
  await page.getByText("Add or change a user").click();
  const userForm = page.getByRole("form", { name: "Add or change a SCRAM user" });
  await userForm.getByLabel("User name").fill(user);
  await userForm.getByLabel("Password").fill("console-secret");
  await userForm.getByRole("button", { name: "Save user" }).click();
  await page.getByTestId("users").getByRole("row").filter({ hasText: user }).filter({ hasText: "SCRAM-SHA-256 (4096 iterations)" }).waitFor();
  const users = await api("GET", "/v1/users");
  expect(users.some((u) => u.name === user), `the user is not in the API: ${JSON.stringify(users)}`);
  // A quota of that user, then removed.
  await page.getByText("Set a quota").click();
  const quotaForm = page.getByRole("form", { name: "Set a client quota" });
  await quotaForm.getByLabel("Entity name").fill(user);
  await quotaForm.getByLabel("Value").fill("1048576");
  await quotaForm.getByRole("button", { name: "Set quota" }).click();
  const quotaRow = page.getByTestId("quotas").getByRole("row").filter({ hasText: `user=${user}` });
  await quotaRow.filter({ hasText: "producer_byte_rate=1048576" }).waitFor();
  // An ACL: stored with an authorizer, else the broker's refusal is shown.
  await page.getByText("Add an ACL").click();
  const aclForm = page.getByRole("form", { name: "Add an ACL" });
  await aclForm.getByLabel("Principal").fill(`User:${user}`);
  await aclForm.getByLabel("Resource name").fill(topic);
  await aclForm.getByRole("button", { name: "Add ACL" }).click();
  if (env.AUTHORIZER === "1") {
    const aclRow = page.getByTestId("acls").getByRole("row").filter({ hasText: `User:${user}` });
    await aclRow.filter({ hasText: topic }).waitFor();
    const acls = await api("GET", "/v1/acls");
    expect(
      acls.acls.some((a) => a.principal === `User:${user}` && a.resource_name === topic && a.operation === "READ"),
      `the ACL is not in the API: ${JSON.stringify(acls)}`,
    );
    await shot("security");
    await aclRow.getByRole("button", { name: /^Remove/ }).click();
    await aclRow.waitFor({ state: "detached" });
  } else {
    await page.getByText(/No Authorizer is configured/).waitFor();
    await shot("security");
  }
  await quotaRow.getByRole("button", { name: /^Remove/ }).click();
  await quotaRow.waitFor({ state: "detached" });
  await page.getByTestId("users").getByRole("button", { name: `Remove user ${user}` }).click();
  await page.getByTestId("users").getByRole("row").filter({ hasText: user }).waitFor({ state: "detached" });

  expect(consoleErrors.length === 0, `errors in the page: ${consoleErrors.join("; ")}`);
  step = "every page passes axe's WCAG 2.1 AA checks";
  expect(a11y.length === 0, `accessibility:\n${a11y.join("\n")}`);
  console.log(`console: every step passed (${shots})`);
  await browser.close();
} catch (e) {
  console.error(`console: FAILED at "${step}": ${e.message}`);
  try {
    // What the page showed (an error message from the broker is the usual clue).
    const text = await page.locator("main").innerText({ timeout: 2_000 });
    console.error(`the page read:\n${text.slice(0, 2_000)}`);
  } catch {}
  try {
    await shot("failure");
  } catch {}
  await browser.close();
  process.exit(1);
}
