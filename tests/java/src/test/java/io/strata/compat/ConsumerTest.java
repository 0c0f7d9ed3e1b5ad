package io.strata.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class ConsumerTest extends BrokerTestBase {
    private String topicWith(int partitions, int records) throws Exception {
        String topic = Clients.unique("consume");
        Clients.createTopic(admin, topic, partitions, Map.of());
        try (KafkaProducer<String, String> p = Clients.producer(broker.bootstrap(), Map.of())) {
            for (int i = 0; i < records; i++) {
                p.send(new ProducerRecord<>(topic, "k" + i, "v" + i));
            }
        }
        return topic;
    }

    private static Map<String, Object> protocol(String groupProtocol) {
        Map<String, Object> m = new HashMap<>();
        m.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, groupProtocol);
        if (groupProtocol.equals("classic")) {
            m.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10_000);
            m.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
        }
        return m;
    }

    /** Two members share the partitions; each record consumed once; committed offsets survive a new member. */
    @ParameterizedTest(name = "group.protocol={0}")
    @ValueSource(strings = {"classic", "consumer"})
    void groupSharesPartitionsAndCommits(String groupProtocol) throws Exception {
        String topic = topicWith(4, 400);
        String group = Clients.unique("g-" + groupProtocol);
        Map<String, Integer> seen = new ConcurrentHashMap<>();
        try (KafkaConsumer<String, String> a = Clients.consumer(broker.bootstrap(), group, protocol(groupProtocol));
             KafkaConsumer<String, String> b = Clients.consumer(broker.bootstrap(), group, protocol(groupProtocol))) {
            a.subscribe(List.of(topic));
            b.subscribe(List.of(topic));
            Instant deadline = Instant.now().plusSeconds(60);
            while (seen.size() < 400 && Instant.now().isBefore(deadline)) {
                for (KafkaConsumer<String, String> c : List.of(a, b)) {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100))) {
                        seen.merge(r.value(), 1, Integer::sum);
                    }
                    commitTolerant(c);
                }
            }
            assertEquals(400, seen.size());
            // both got partitions once the group settled
            Instant settle = Instant.now().plusSeconds(30);
            while ((a.assignment().isEmpty() || b.assignment().isEmpty()) && Instant.now().isBefore(settle)) {
                a.poll(Duration.ofMillis(100));
                b.poll(Duration.ofMillis(100));
            }
            assertEquals(4, a.assignment().size() + b.assignment().size());
            assertTrue(!a.assignment().isEmpty() && !b.assignment().isEmpty());
            // settled: these commits must go through
            for (int i = 0; i < 20 && !(commitTolerant(a) & commitTolerant(b)); i++) {
                a.poll(Duration.ofMillis(100));
                b.poll(Duration.ofMillis(100));
            }
        }
        Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        assertEquals(400, committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum());
        // a later member resumes from the committed offsets: nothing left to read
        try (KafkaConsumer<String, String> c = Clients.consumer(broker.bootstrap(), group, protocol(groupProtocol))) {
            c.subscribe(List.of(topic));
            int extra = 0;
            Instant until = Instant.now().plusSeconds(5);
            while (Instant.now().isBefore(until)) {
                extra += c.poll(Duration.ofMillis(200)).count();
            }
            assertEquals(0, extra);
        }
    }

    /** Static members (KIP-345): a restart with the same group.instance.id gets its partitions back without a rebalance. */
    @Test
    void staticMemberKeepsAssignmentAcrossRestart() throws Exception {
        String topic = topicWith(2, 10);
        String group = Clients.unique("static");
        Map<String, Object> cfg = new HashMap<>(protocol("classic"));
        cfg.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-1");
        Set<TopicPartition> first;
        try (KafkaConsumer<String, String> c = Clients.consumer(broker.bootstrap(), group, cfg)) {
            c.subscribe(List.of(topic));
            first = pollUntilAssigned(c, 2);
        }
        var before = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        assertEquals(1, before.members().size(), "a static member stays in the group after close");
        assertEquals("instance-1", before.members().iterator().next().groupInstanceId().orElse(null));
        try (KafkaConsumer<String, String> c = Clients.consumer(broker.bootstrap(), group, cfg)) {
            c.subscribe(List.of(topic));
            assertEquals(first, pollUntilAssigned(c, 2));
        }
    }

    /** Cooperative rebalancing: when a second member joins, the first keeps the partitions it still owns. */
    @Test
    void cooperativeRebalanceRevokesOnlyWhatMoves() throws Exception {
        String topic = topicWith(4, 10);
        String group = Clients.unique("coop");
        Map<String, Object> cfg = new HashMap<>(protocol("classic"));
        cfg.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
        List<TopicPartition> revokedFromA = new ArrayList<>();
        try (KafkaConsumer<String, String> a = Clients.consumer(broker.bootstrap(), group, cfg);
             KafkaConsumer<String, String> b = Clients.consumer(broker.bootstrap(), group, cfg)) {
            a.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                    revokedFromA.addAll(ps);
                }

                public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                }
            });
            assertEquals(4, pollUntilAssigned(a, 4).size());
            b.subscribe(List.of(topic));
            Instant deadline = Instant.now().plusSeconds(60);
            while ((a.assignment().size() != 2 || b.assignment().size() != 2) && Instant.now().isBefore(deadline)) {
                a.poll(Duration.ofMillis(50));
                b.poll(Duration.ofMillis(50));
            }
            assertEquals(2, a.assignment().size());
            assertEquals(2, b.assignment().size());
            assertEquals(2, revokedFromA.size(), "only the partitions that moved were revoked: " + revokedFromA);
            Set<TopicPartition> all = new HashSet<>(a.assignment());
            all.addAll(b.assignment());
            assertEquals(4, all.size());
        }
    }

    /** seek, seekToBeginning/End, offsetsForTimes, beginningOffsets/endOffsets, position. */
    @Test
    void seekAndOffsetsForTimes() throws Exception {
        String topic = Clients.unique("seek");
        Clients.createTopic(admin, topic, 1, Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        long base = System.currentTimeMillis() - 100_000;
        try (KafkaProducer<String, String> p = Clients.producer(broker.bootstrap(), Map.of())) {
            for (int i = 0; i < 100; i++) {
                p.send(new ProducerRecord<>(topic, 0, base + i * 1000L, "k" + i, "v" + i)).get();
            }
        }
        try (KafkaConsumer<String, String> c = Clients.consumer(broker.bootstrap(), null, Map.of())) {
            c.assign(List.of(tp));
            assertEquals(0L, c.beginningOffsets(List.of(tp)).get(tp));
            assertEquals(100L, c.endOffsets(List.of(tp)).get(tp));
            Map<TopicPartition, OffsetAndTimestamp> at = c.offsetsForTimes(Map.of(tp, base + 41_500));
            assertNotNull(at.get(tp));
            assertEquals(42, at.get(tp).offset());
            assertEquals(base + 42_000, at.get(tp).timestamp());
            assertEquals(null, c.offsetsForTimes(Map.of(tp, base + 1_000_000)).get(tp), "past the last timestamp");
            c.seek(tp, 90);
            List<ConsumerRecord<String, String>> got = new ArrayList<>();
            Instant deadline = Instant.now().plusSeconds(20);
            while (got.size() < 10 && Instant.now().isBefore(deadline)) {
                c.poll(Duration.ofMillis(100)).forEach(got::add);
            }
            assertEquals(90, got.get(0).offset());
            assertEquals("v90", got.get(0).value());
            assertEquals(100, c.position(tp));
            c.seekToBeginning(List.of(tp));
            assertEquals(0, c.position(tp));
            c.seekToEnd(List.of(tp));
            assertEquals(100, c.position(tp));
        }
    }

    /**
     * commitSync as applications must call it: while the group rebalances a commit can fail
     * (classic: REBALANCE_IN_PROGRESS / ILLEGAL_GENERATION; KIP-848: STALE_MEMBER_EPOCH when the
     * epoch moved on before the client heard of it, as with Kafka); the next poll catches up.
     */
    private static boolean commitTolerant(KafkaConsumer<String, String> c) {
        try {
            c.commitSync();
            return true;
        } catch (org.apache.kafka.clients.consumer.CommitFailedException
                | org.apache.kafka.common.errors.RebalanceInProgressException
                | org.apache.kafka.common.errors.StaleMemberEpochException e) {
            return false;
        }
    }

    private static Set<TopicPartition> pollUntilAssigned(KafkaConsumer<String, String> c, int n) {
        Instant deadline = Instant.now().plusSeconds(60);
        while (c.assignment().size() < n && Instant.now().isBefore(deadline)) {
            c.poll(Duration.ofMillis(100));
        }
        assertEquals(n, c.assignment().size());
        return new HashSet<>(c.assignment());
    }
}
