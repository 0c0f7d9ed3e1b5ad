package io.strata.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ProducerTest {
    StrataBroker broker;
    Admin admin;

    @BeforeAll
    void start() throws Exception {
        broker = new StrataBroker();
        admin = Clients.admin(broker.bootstrap());
    }

    @AfterAll
    void stop() throws Exception {
        admin.close();
        broker.close();
    }

    /** Every acks level × every codec × idempotence: all records back, in order per partition, keys on one partition. */
    @ParameterizedTest(name = "acks={0} compression={1} idempotent={2}")
    @CsvSource({
        "0, none, false", "1, none, false", "all, none, false", "all, none, true",
        "1, gzip, false", "all, snappy, true", "all, lz4, true", "all, zstd, true", "1, zstd, false", "0, lz4, false",
    })
    void producesAndReadsBack(String acks, String compression, boolean idempotent) throws Exception {
        String topic = Clients.unique("produce-" + compression);
        Clients.createTopic(admin, topic, 3, Map.of());
        Map<String, Object> cfg = new HashMap<>();
        cfg.put(ProducerConfig.ACKS_CONFIG, acks);
        cfg.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        cfg.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, idempotent);
        cfg.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        int n = 2000;
        List<Future<RecordMetadata>> acked = new ArrayList<>();
        try (KafkaProducer<String, String> p = Clients.producer(broker.bootstrap(), cfg)) {
            for (int i = 0; i < n; i++) {
                acked.add(p.send(new ProducerRecord<>(topic, "key-" + (i % 17), "value-" + i)));
            }
            p.flush();
            for (Future<RecordMetadata> f : acked) {
                RecordMetadata m = f.get();
                if (!acks.equals("0")) {
                    assertTrue(m.hasOffset() && m.offset() >= 0, "offset reported with acks=" + acks);
                }
            }
        }
        List<ConsumerRecord<String, String>> got = Clients.readAll(broker.bootstrap(), topic, n, Map.of());
        assertEquals(n, got.size());
        Map<String, Integer> partitionOfKey = new HashMap<>();
        Map<Integer, Long> lastOffset = new HashMap<>();
        Map<String, Integer> lastValueOfKey = new HashMap<>();
        for (ConsumerRecord<String, String> r : got) {
            Integer prev = partitionOfKey.putIfAbsent(r.key(), r.partition());
            assertTrue(prev == null || prev == r.partition(), "key " + r.key() + " on one partition");
            Long lo = lastOffset.put(r.partition(), r.offset());
            assertTrue(lo == null || r.offset() > lo, "offsets increase within a partition");
            int v = Integer.parseInt(r.value().substring("value-".length()));
            Integer lv = lastValueOfKey.put(r.key(), v);
            assertTrue(lv == null || v > lv, "per-key order kept");
        }
    }

    /** Idempotent producer: acknowledged offsets are exactly the ones read back, no duplicates. */
    @ParameterizedTest(name = "partitions={0}")
    @CsvSource({"1", "4"})
    void idempotentOffsetsMatchReadBack(int partitions) throws Exception {
        String topic = Clients.unique("idem");
        Clients.createTopic(admin, topic, partitions, Map.of());
        Map<String, Object> cfg = Map.of(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true,
                ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5, ProducerConfig.BATCH_SIZE_CONFIG, 512);
        Map<String, String> ackedAt = new HashMap<>();
        try (KafkaProducer<String, String> p = Clients.producer(broker.bootstrap(), cfg)) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < 3000; i++) {
                fs.add(p.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
            }
            for (int i = 0; i < fs.size(); i++) {
                RecordMetadata m = fs.get(i).get();
                ackedAt.put(m.partition() + "/" + m.offset(), "v" + i);
            }
        }
        List<ConsumerRecord<String, String>> got = Clients.readAll(broker.bootstrap(), topic, 3000, Map.of());
        assertEquals(3000, got.size());
        for (ConsumerRecord<String, String> r : got) {
            assertEquals(ackedAt.get(r.partition() + "/" + r.offset()), r.value());
        }
    }
}
