package io.strata.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.InvalidRecordException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class ProducerTest extends BrokerTestBase {
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

    /**
     * KIP-467: a batch refused for some records names them. The Java client fails the bad
     * record with the broker's per-record message and the others with "part of a batch".
     */
    @Test
    void recordErrorsNameTheBadRecords() throws Exception {
        String topic = Clients.unique("compacted");
        Clients.createTopic(admin, topic, 1, Map.of("cleanup.policy", "compact"));
        Map<String, Object> cfg = Map.of(ProducerConfig.LINGER_MS_CONFIG, 500, ProducerConfig.RETRIES_CONFIG, 0,
                ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false);
        List<Future<RecordMetadata>> fs = new ArrayList<>();
        try (KafkaProducer<String, String> p = Clients.producer(broker.bootstrap(), cfg)) {
            fs.add(p.send(new ProducerRecord<>(topic, 0, "k0", "v0")));
            fs.add(p.send(new ProducerRecord<>(topic, 0, null, "keyless")));
            fs.add(p.send(new ProducerRecord<>(topic, 0, "k2", "v2")));
        }
        List<String> messages = new ArrayList<>();
        for (Future<RecordMetadata> f : fs) {
            ExecutionException e = assertThrows(ExecutionException.class, f::get);
            messages.add(e.getCause().getMessage());
        }
        ExecutionException bad = assertThrows(ExecutionException.class, fs.get(1)::get);
        assertInstanceOf(InvalidRecordException.class, bad.getCause(), String.valueOf(bad.getCause()));
        assertTrue(messages.get(1).contains("Compacted topic cannot accept message without key"), messages.get(1));
        assertTrue(messages.get(0).contains("part of a batch"), messages.get(0));
        assertTrue(messages.get(2).contains("part of a batch"), messages.get(2));
    }

    /**
     * min.insync.replicas above the replication factor: Kafka takes the smaller of the two as the
     * effective minimum (Partition.effectiveMinIsr), so on one replica acks=all still succeeds.
     */
    @Test
    void minInsyncReplicasAboveReplicationFactorDoesNotBlock() throws Exception {
        String topic = Clients.unique("min-isr");
        Clients.createTopic(admin, topic, 1, Map.of("min.insync.replicas", "2"));
        Map<String, Object> all = Map.of(ProducerConfig.ACKS_CONFIG, "all", ProducerConfig.RETRIES_CONFIG, 0);
        try (KafkaProducer<String, String> p = Clients.producer(broker.bootstrap(), all)) {
            assertEquals(0, p.send(new ProducerRecord<>(topic, "k", "v")).get().offset());
        }
    }

    /** compression.type on the topic: batches in another codec are stored re-encoded; clients read the same records. */
    @ParameterizedTest(name = "topic={0} producer={1}")
    @CsvSource({"gzip, lz4", "zstd, none", "uncompressed, snappy", "lz4, zstd", "producer, gzip"})
    void topicCompressionType(String topicCodec, String producerCodec) throws Exception {
        String topic = Clients.unique("codec-" + topicCodec);
        Clients.createTopic(admin, topic, 1, Map.of("compression.type", topicCodec, "compression.gzip.level", "9",
                "compression.zstd.level", "10"));
        try (KafkaProducer<String, String> p = Clients.producer(broker.bootstrap(),
                Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, producerCodec, ProducerConfig.LINGER_MS_CONFIG, 20))) {
            for (int i = 0; i < 500; i++) {
                p.send(new ProducerRecord<>(topic, "key-" + i, "value-" + i + "-" + "x".repeat(i % 50)));
            }
        }
        List<ConsumerRecord<String, String>> got = Clients.readAll(broker.bootstrap(), topic, 500, Map.of());
        assertEquals(500, got.size());
        for (int i = 0; i < 500; i++) {
            assertEquals("key-" + i, got.get(i).key());
            assertEquals("value-" + i + "-" + "x".repeat(i % 50), got.get(i).value());
            assertEquals(i, got.get(i).offset());
        }
        if (!broker.isExternal()) {
            // white box: every stored batch carries the topic's codec (attributes, low 3 bits)
            String expected = topicCodec.equals("producer") ? producerCodec : topicCodec;
            int codec = List.of("uncompressed", "gzip", "snappy", "lz4", "zstd").indexOf(
                    expected.equals("none") ? "uncompressed" : expected);
            java.nio.file.Path seg = broker.dataDir().resolve(topic + "-0").resolve("00000000000000000000.log");
            java.nio.ByteBuffer buf = java.nio.ByteBuffer.wrap(java.nio.file.Files.readAllBytes(seg));
            int batches = 0;
            while (buf.remaining() >= 61) {
                int start = buf.position();
                int length = buf.getInt(start + 8);
                assertEquals(codec, buf.getShort(start + 21) & 7, "codec of batch " + batches);
                buf.position(start + 12 + length);
                batches++;
            }
            assertTrue(batches > 0);
        }
    }
}
