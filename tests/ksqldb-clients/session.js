// Drives strata's SQL listener with ksqldb-client (npm; HTTP/2, as ksqlDB's own Java client
// talks): statements, inserts, a push query read while rows arrive and then closed, a pull
// query, listings and a refused statement. Prints one JSON object with what it saw.
//   node session.js <host> <port> <suffix>
const KsqldbClient = require("ksqldb-client");

const [host, port, suffix] = process.argv.slice(2);
const STREAM = `READINGS_${suffix}`;
const TABLE = `TOTALS_${suffix}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const client = new KsqldbClient({ host: `http://${host}`, port: Number(port) });
  await client.connect();
  const seen = {};

  const created = await client.executeStatement(
    `CREATE STREAM ${STREAM} (SENSOR STRING KEY, READING INT) WITH (kafka_topic='${STREAM.toLowerCase()}', partitions=1, value_format='JSON');`
  );
  seen.createStatus = created.status;
  seen.createError = created.error ? String(created.error.message || JSON.stringify(created.error)) : null;

  const table = await client.executeStatement(
    `CREATE TABLE ${TABLE} AS SELECT SENSOR, COUNT(*) AS N, SUM(READING) AS TOTAL FROM ${STREAM} GROUP BY SENSOR;`,
    { streamsProperties: { "ksql.streams.auto.offset.reset": "earliest" } }
  );
  seen.tableStatus = table.status;

  // A push query from the start, read while rows are inserted; closed by its id.
  const pushed = [];
  let queryId = null;
  const push = client.streamQuery(
    `SELECT SENSOR, READING FROM ${STREAM} EMIT CHANGES;`,
    (data) => {
      if (data.metadata && data.metadata.queryId) queryId = data.metadata.queryId;
      for (const row of data.rows || []) pushed.push(row);
    }
  );
  // From the latest offsets: rows inserted once the query has answered its header.
  const started = Date.now() + 20000;
  while (!queryId && Date.now() < started) await sleep(20);

  seen.inserts = [];
  for (let i = 0; i < 6; i++) {
    const r = await client.insertInto(STREAM, { SENSOR: `s${i % 2}`, READING: i + 1 });
    seen.inserts.push(r.status);
  }

  const deadline = Date.now() + 20000;
  while (pushed.length < 6 && Date.now() < deadline) await sleep(50);
  seen.pushed = pushed;
  seen.pushQueryId = queryId;
  if (queryId) {
    const closed = await client.terminatePushQuery(queryId);
    seen.closeError = closed.error ? JSON.stringify(closed.error) : null;
  }
  const ended = await Promise.race([push.then(() => "ended"), sleep(10000).then(() => "still running")]);
  seen.pushEnded = ended;

  // The table catches up: a pull query by key, polled until both sensors are counted.
  let pulled = null;
  const until = Date.now() + 20000;
  while (Date.now() < until) {
    const { data, error } = await client.query(`SELECT SENSOR, N, TOTAL FROM ${TABLE} WHERE SENSOR = 's1';`);
    if (error) {
      seen.pullError = JSON.stringify(error);
    } else if (data.rows.length && data.rows[0].N === 3) {
      pulled = data;
      break;
    }
    await sleep(100);
  }
  seen.pulled = pulled && { columnNames: pulled.metadata.columnNames, rows: pulled.rows };

  seen.streams = (await client.listStreams()).map((s) => s.name);
  seen.tables = (await client.listTables()).map((t) => t.name);
  seen.topics = (await client.listTopics()).map((t) => t.name);
  seen.queries = (await client.listQueries()).map((q) => q.queryString);
  const described = await client.describeSource(STREAM);
  seen.described = described.fields.map((f) => `${f.name} ${f.schema.type}`);

  const bad = await client.executeStatement(`CREATE STREAM ${STREAM}_BAD AS SELECT NOPE FROM ${STREAM};`);
  seen.badStatus = bad.status;
  seen.badMessage = bad.error ? bad.error.message : null;

  await client.disconnect();
  console.log(JSON.stringify(seen));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
