package io.strata.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.junit.jupiter.api.Test;

class TransactionsTest extends BrokerTestBase {
    private KafkaProducer<String, String> txnProducer(String id) {
        return Clients.producer(broker.bootstrap(), Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id,
                ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 30_000));
    }

    private static Map<String, Object> readCommitted() {
        return Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    }

    /** Consume-transform-produce with sendOffsetsToTransaction: output and offsets move together, exactly once. */
    @Test
    void consumeTransformProduce() throws Exception {
        String in = Clients.unique("ctp-in");
        String out = Clients.unique("ctp-out");
        String group = Clients.unique("ctp-g");
        Clients.createTopic(admin, in, 2, Map.of());
        Clients.createTopic(admin, out, 2, Map.of());
        try (KafkaProducer<String, String> p = Clients.producer(broker.bootstrap(), Map.of())) {
            for (int i = 0; i < 200; i++) {
                p.send(new ProducerRecord<>(in, "k" + i, Integer.toString(i)));
            }
        }
        int processed = 0;
        int round = 0;
        try (KafkaProducer<String, String> p = txnProducer(Clients.unique("ctp-txn"));
             KafkaConsumer<String, String> c = Clients.consumer(broker.bootstrap(), group,
                     Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed", ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 25))) {
            p.initTransactions();
            c.subscribe(List.of(in));
            Instant deadline = Instant.now().plusSeconds(60);
            while (processed < 200 && Instant.now().isBefore(deadline)) {
                ConsumerRecords<String, String> batch = c.poll(Duration.ofMillis(200));
                if (batch.isEmpty()) {
                    continue;
                }
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : batch) {
                    p.send(new ProducerRecord<>(out, r.key(), Integer.toString(Integer.parseInt(r.value()) * 2)));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                p.sendOffsetsToTransaction(offsets, c.groupMetadata());
                if (round++ == 1) {
                    // one aborted round: its output is never seen and its offsets never committed
                    // (flushed first: abortTransaction drops records not yet sent)
                    p.flush();
                    p.abortTransaction();
                    for (TopicPartition tp : offsets.keySet()) {
                        OffsetAndMetadata committed = admin.listConsumerGroupOffsets(group)
                                .partitionsToOffsetAndMetadata().get().get(tp);
                        c.seek(tp, committed == null ? 0 : committed.offset());
                    }
                    continue;
                }
                p.commitTransaction();
                processed += batch.count();
            }
        }
        assertEquals(200, processed);
        List<ConsumerRecord<String, String>> got = Clients.readAll(broker.bootstrap(), out, 200, readCommitted());
        assertEquals(200, got.size(), "every input exactly once in the committed output");
        assertEquals(200, got.stream().map(ConsumerRecord::key).distinct().count());
        for (ConsumerRecord<String, String> r : got) {
            assertEquals(Integer.parseInt(r.key().substring(1)) * 2, Integer.parseInt(r.value()));
        }
        Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        assertEquals(200, committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum());
        // read_uncommitted sees the aborted round's records too
        List<ConsumerRecord<String, String>> all = Clients.readAll(broker.bootstrap(), out, 201,
                Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_uncommitted"));
        assertTrue(all.size() > 200, "aborted records are in the log: " + all.size());
    }

    /** A second producer with the same transactional.id fences the first; its open transaction is aborted. */
    @Test
    void zombieIsFenced() throws Exception {
        String topic = Clients.unique("fence");
        Clients.createTopic(admin, topic, 1, Map.of());
        String id = Clients.unique("fence-txn");
        KafkaProducer<String, String> zombie = txnProducer(id);
        zombie.initTransactions();
        zombie.beginTransaction();
        zombie.send(new ProducerRecord<>(topic, "k", "from-zombie")).get();
        try (KafkaProducer<String, String> fresh = txnProducer(id)) {
            fresh.initTransactions();
            Exception thrown = assertThrows(Exception.class, () -> {
                zombie.send(new ProducerRecord<>(topic, "k", "late")).get();
                zombie.commitTransaction();
            });
            Throwable e = thrown instanceof java.util.concurrent.ExecutionException ? thrown.getCause() : thrown;
            // Kafka 4.4 itself answers the zombie's produce with INVALID_PRODUCER_EPOCH (KIP-588)
            assertTrue(e instanceof ProducerFencedException
                    || e instanceof org.apache.kafka.common.errors.InvalidProducerEpochException, "fenced: " + e);
            fresh.beginTransaction();
            fresh.send(new ProducerRecord<>(topic, "k", "from-fresh"));
            fresh.commitTransaction();
        } finally {
            zombie.close(Duration.ZERO);
        }
        List<ConsumerRecord<String, String>> got = Clients.readAll(broker.bootstrap(), topic, 1, readCommitted());
        assertEquals(List.of("from-fresh"), got.stream().map(ConsumerRecord::value).collect(Collectors.toList()));
    }

    /** The transaction admin APIs see an open transaction; describeProducers shows its producer. */
    @Test
    void adminSeesTransactions() throws Exception {
        String topic = Clients.unique("txn-admin");
        Clients.createTopic(admin, topic, 1, Map.of());
        String id = Clients.unique("txn-admin-id");
        try (KafkaProducer<String, String> p = txnProducer(id)) {
            p.initTransactions();
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, "k", "v")).get();
            List<TransactionListing> listed = List.copyOf(admin.listTransactions().all().get());
            assertTrue(listed.stream().anyMatch(t -> t.transactionalId().equals(id)));
            var d = admin.describeTransactions(List.of(id)).all().get().get(id);
            assertEquals(org.apache.kafka.clients.admin.TransactionState.ONGOING, d.state());
            assertTrue(d.topicPartitions().contains(new TopicPartition(topic, 0)));
            var producers = admin.describeProducers(List.of(new TopicPartition(topic, 0))).all().get()
                    .get(new TopicPartition(topic, 0)).activeProducers();
            assertEquals(1, producers.size());
            assertTrue(producers.get(0).currentTransactionStartOffset().isPresent());
            p.commitTransaction();
            assertEquals(org.apache.kafka.clients.admin.TransactionState.COMPLETE_COMMIT,
                    admin.describeTransactions(List.of(id)).all().get().get(id).state());
        }
    }
}
