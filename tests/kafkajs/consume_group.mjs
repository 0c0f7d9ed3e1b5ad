// A KafkaJS consumer group reads a topic from the beginning, commits, and prints what it
// read as JSON: node consume_group.mjs BOOTSTRAP TOPIC GROUP COUNT
import { Kafka, logLevel } from "kafkajs";

const [bootstrap, topic, groupId, countArg] = process.argv.slice(2);
const count = Number(countArg);
const kafka = new Kafka({ clientId: "strata-js", brokers: [bootstrap], logLevel: logLevel.NOTHING });
const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500 });
const seen = [];
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
const done = new Promise((resolve) => {
  consumer.run({
    eachMessage: async ({ partition, message }) => {
      seen.push({ partition, offset: Number(message.offset), value: message.value.toString() });
      if (seen.length >= count) resolve();
    },
  });
});
let timer;
const timeout = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new Error(`only ${seen.length} of ${count}`)), 30000);
});
await Promise.race([done, timeout]);
clearTimeout(timer);
await consumer.disconnect();
console.log(JSON.stringify({ seen }));
