// Usage: node produce_and_admin.mjs HOST:PORT TOPIC COUNT
// Creates TOPIC (2 partitions), produces COUNT keyed messages (gzip, acks=all), checks
// admin views, and prints one JSON line with what it saw. Consumption needs consumer
// groups in KafkaJS, so the Python test reads the data back with librdkafka.
import { Kafka, CompressionTypes, logLevel } from "kafkajs";

const [bootstrap, topic, countArg] = process.argv.slice(2);
const count = Number(countArg);
const kafka = new Kafka({ clientId: "strata-kafkajs", brokers: [bootstrap], logLevel: logLevel.ERROR, retry: { retries: 3 } });

const admin = kafka.admin();
await admin.connect();
const created = await admin.createTopics({ topics: [{ topic, numPartitions: 2, configEntries: [{ name: "retention.ms", value: "3600000" }] }] });
const again = await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });

const producer = kafka.producer();
await producer.connect();
const messages = Array.from({ length: count }, (_, i) => ({ key: `k${i % 5}`, value: `js-${i}` }));
const results = await producer.send({ topic, messages, acks: -1, compression: CompressionTypes.GZIP });
await producer.disconnect();

const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
const offsets = await admin.fetchTopicOffsets(topic);
const configs = await admin.describeConfigs({ resources: [{ type: 2, name: topic, configNames: ["retention.ms"] }], includeSynonyms: false });
await admin.disconnect();

console.log(JSON.stringify({
  created,
  createdAgain: again,
  partitions: metadata.topics[0].partitions.length,
  produced: results.map((r) => ({ partition: r.partition, errorCode: r.errorCode, baseOffset: r.baseOffset })),
  highWatermarks: offsets.map((o) => ({ partition: o.partition, high: o.high, low: o.low })),
  retentionMs: configs.resources[0].configEntries.find((c) => c.configName === "retention.ms").configValue,
}));
