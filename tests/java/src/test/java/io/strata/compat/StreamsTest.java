package io.strata.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.function.Supplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.junit.jupiter.api.Test;

/**
 * Kafka Streams with exactly_once_v2 — transactions, KIP-447 offset commits, DeleteRecords on
 * the repartition topic and a compacted changelog at once. A keyed sum re-keyed through a
 * repartition topic, record caches off so every input makes exactly one output update: with
 * exactly-once, the committed output per key is exactly the running sums 1, 2, ... n of its
 * inputs — before, across a SIGKILL of the broker, and across an application restart that
 * restores its store from the changelog.
 */
class StreamsTest {
    static final int KEYS = 20;

    static Properties streamsConfig(String bootstrap, String appId, java.nio.file.Path stateDir) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 200);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 10_000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1_000);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG), 10_000);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG), 60_000);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG), 10_000);
        return p;
    }

    static KafkaStreams app(String bootstrap, String appId, java.nio.file.Path stateDir, String in, String out) {
        StreamsBuilder b = new StreamsBuilder();
        // input key "i<n>", value "<key>:<amount>": re-keyed by <key>, summed per key
        b.stream(in, Consumed.with(Serdes.String(), Serdes.String()))
                .map((k, v) -> KeyValue.pair(v.substring(0, v.indexOf(':')), Long.parseLong(v.substring(v.indexOf(':') + 1))))
                .groupByKey(Grouped.with("by-key", Serdes.String(), Serdes.Long()))
                .reduce(Long::sum, Materialized.as("sums"))
                .toStream()
                .to(out, Produced.with(Serdes.String(), Serdes.Long()));
        KafkaStreams s = new KafkaStreams(b.build(), streamsConfig(bootstrap, appId, stateDir));
        s.setUncaughtExceptionHandler(e -> StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD);
        s.start();
        return s;
    }

    /** Produces inputs [from, to): each adds 1 to key "key-<i % KEYS>". */
    static void produce(String bootstrap, String in, int from, int to) throws Exception {
        try (KafkaProducer<String, String> p = Clients.producer(bootstrap, Map.of(ProducerConfig.ACKS_CONFIG, "all",
                ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120_000))) {
            for (int i = from; i < to; i++) {
                p.send(new ProducerRecord<>(in, "i" + i, "key-" + (i % KEYS) + ":1"));
            }
            p.flush();
        }
    }

    static List<ConsumerRecord<String, Long>> committedOutput(String bootstrap, String out) {
        List<ConsumerRecord<String, Long>> got = new ArrayList<>();
        Map<String, Object> cfg = new HashMap<>();
        cfg.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cfg.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cfg.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        try (var c = new org.apache.kafka.clients.consumer.KafkaConsumer<>(cfg, Serdes.String().deserializer(),
                Serdes.Long().deserializer())) {
            var tps = c.partitionsFor(out).stream()
                    .map(pi -> new org.apache.kafka.common.TopicPartition(out, pi.partition())).toList();
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<org.apache.kafka.common.TopicPartition, Long> end = c.endOffsets(tps);
            Instant deadline = Instant.now().plusSeconds(30);
            while (Instant.now().isBefore(deadline) && tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                c.poll(Duration.ofMillis(200)).forEach(got::add);
            }
        }
        return got;
    }

    /** Waits until the committed output holds {@code n} updates (or a minute passes). */
    static List<ConsumerRecord<String, Long>> awaitOutput(String bootstrap, String out, int n, Supplier<String> state) {
        Instant deadline = Instant.now().plusSeconds(90);
        List<ConsumerRecord<String, Long>> got = committedOutput(bootstrap, out);
        while (got.size() < n && Instant.now().isBefore(deadline)) {
            StrataBroker.sleep(500);
            got = committedOutput(bootstrap, out);
        }
        assertEquals(n, got.size(), "committed output updates (app " + state.get() + ")");
        return got;
    }

    /** Exactly once: per key, the committed updates are 1, 2, ..., inputs of that key. */
    static void assertExactSums(List<ConsumerRecord<String, Long>> got, int inputs) {
        Map<String, List<Long>> perKey = new HashMap<>();
        for (ConsumerRecord<String, Long> r : got) {
            perKey.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
        }
        assertEquals(KEYS, perKey.size());
        for (int k = 0; k < KEYS; k++) {
            List<Long> sums = perKey.get("key-" + k);
            int expected = inputs / KEYS + (k < inputs % KEYS ? 1 : 0);
            assertEquals(expected, sums.size(), "updates of key-" + k);
            for (int i = 0; i < sums.size(); i++) {
                assertEquals(i + 1, sums.get(i), "running sum of key-" + k + " at update " + i + ": " + sums);
            }
        }
    }

    @Test
    void exactlyOnceAcrossBrokerKillAndAppRestart() throws Exception {
        java.nio.file.Path stateDir = java.nio.file.Files.createTempDirectory("streams-state-");
        try (StrataBroker broker = new StrataBroker("group_initial_rebalance_delay_ms = 0\n");
             Admin admin = Clients.admin(broker.bootstrap())) {
            String in = Clients.unique("streams-in");
            String out = Clients.unique("streams-out");
            String appId = Clients.unique("streams-app");
            Clients.createTopic(admin, in, 4, Map.of());
            Clients.createTopic(admin, out, 2, Map.of());
            produce(broker.bootstrap(), in, 0, 2000);
            KafkaStreams s = app(broker.bootstrap(), appId, stateDir, in, out);
            try {
                assertExactSums(awaitOutput(broker.bootstrap(), out, 2000, () -> s.state().toString()), 2000);

                // the internal topics as Streams made them
                ConfigResource changelog = new ConfigResource(ConfigResource.Type.TOPIC, appId + "-sums-changelog");
                ConfigResource repartition = new ConfigResource(ConfigResource.Type.TOPIC, appId + "-by-key-repartition");
                Map<ConfigResource, Config> cfgs = admin.describeConfigs(List.of(changelog, repartition)).all().get();
                assertEquals("compact", cfgs.get(changelog).get("cleanup.policy").value());
                assertEquals("delete", cfgs.get(repartition).get("cleanup.policy").value());

                if (!broker.isExternal()) {
                    // SIGKILL the broker while the app is mid-stream, then bring it back
                    Thread feeder = new Thread(() -> {
                        try {
                            produce(broker.bootstrap(), in, 2000, 4000);
                        } catch (Exception e) {
                            throw new RuntimeException(e);
                        }
                    });
                    feeder.start();
                    StrataBroker.sleep(300);
                    broker.kill9();
                    StrataBroker.sleep(500);
                    broker.start();
                    feeder.join(180_000);
                } else {
                    produce(broker.bootstrap(), in, 2000, 4000);
                }
                assertExactSums(awaitOutput(broker.bootstrap(), out, 4000, () -> s.state().toString()), 4000);
            } finally {
                s.close(Duration.ofSeconds(30));
            }
            // a new instance restores its store from the changelog and carries on
            produce(broker.bootstrap(), in, 4000, 5000);
            KafkaStreams again = app(broker.bootstrap(), appId, java.nio.file.Files.createTempDirectory("streams-state-"), in, out);
            try {
                assertExactSums(awaitOutput(broker.bootstrap(), out, 5000, () -> again.state().toString()), 5000);
            } finally {
                again.close(Duration.ofSeconds(30));
            }
            // repartition records already processed were deleted by Streams (DeleteRecords)
            long purged = 0;
            for (int p = 0; p < 4; p++) {
                var tp = new org.apache.kafka.common.TopicPartition(appId + "-by-key-repartition", p);
                purged += admin.listOffsets(Map.of(tp, org.apache.kafka.clients.admin.OffsetSpec.earliest()))
                        .partitionResult(tp).get().offset();
            }
            assertTrue(purged > 0, "repartition topic purged up to the committed offsets");
        }
    }
}
