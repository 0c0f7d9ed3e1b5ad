package io.strata.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.Test;

class AdminTest extends BrokerTestBase {
    private void produce(String topic, int partition, int n) throws Exception {
        try (KafkaProducer<String, String> p = Clients.producer(broker.bootstrap(), Map.of())) {
            for (int i = 0; i < n; i++) {
                // distinct timestamps, so max-timestamp has one answer
                p.send(new ProducerRecord<>(topic, partition, System.currentTimeMillis() - 10_000 + i, "k" + i, "v" + i));
            }
        }
    }

    @Test
    void cluster() throws Exception {
        DescribeClusterResult c = admin.describeCluster();
        assertEquals(1, c.nodes().get().size());
        assertEquals(c.nodes().get().iterator().next().id(), c.controller().get().id());
        assertFalse(c.clusterId().get().isEmpty());
    }

    @Test
    void topicsLifecycle() throws Exception {
        String topic = Clients.unique("admin-topic");
        admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1)), new CreateTopicsOptions().validateOnly(true)).all().get();
        assertFalse(admin.listTopics().names().get().contains(topic), "validateOnly creates nothing");
        admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1).configs(Map.of("retention.ms", "3600000")))).all().get();
        assertTrue(admin.listTopics().names().get().contains(topic));
        ExecutionException dup = assertThrows(ExecutionException.class,
                () -> admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get());
        assertInstanceOf(TopicExistsException.class, dup.getCause());

        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        assertEquals(2, d.partitions().size());
        assertEquals(1, d.partitions().get(0).replicas().size());
        assertFalse(d.isInternal());

        admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get();
        assertEquals(5, admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size());

        admin.deleteTopics(List.of(topic)).all().get();
        ExecutionException gone = assertThrows(ExecutionException.class,
                () -> admin.describeTopics(List.of(topic)).allTopicNames().get());
        assertInstanceOf(UnknownTopicOrPartitionException.class, gone.getCause());
    }

    @Test
    void topicConfigs() throws Exception {
        String topic = Clients.unique("admin-configs");
        // every one of these is a Kafka 4.x topic config a client may pass at creation
        Map<String, String> configs = Map.ofEntries(
                Map.entry("compression.type", "zstd"), Map.entry("min.insync.replicas", "1"),
                Map.entry("unclean.leader.election.enable", "false"), Map.entry("max.message.bytes", "2000000"),
                Map.entry("message.timestamp.type", "CreateTime"), Map.entry("index.interval.bytes", "4096"),
                Map.entry("segment.index.bytes", "10485760"), Map.entry("segment.jitter.ms", "0"),
                Map.entry("preallocate", "false"), Map.entry("file.delete.delay.ms", "60000"),
                Map.entry("message.timestamp.before.max.ms", "9223372036854775807"),
                Map.entry("message.timestamp.after.max.ms", "3600000"), Map.entry("retention.bytes", "-1"));
        Clients.createTopic(admin, topic, 1, configs);
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config cfg = admin.describeConfigs(List.of(res)).all().get().get(res);
        for (var e : configs.entrySet()) {
            ConfigEntry ce = cfg.get(e.getKey());
            assertEquals(e.getValue(), ce == null ? null : ce.value(), e.getKey());
            assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, ce.source(), e.getKey());
        }
        ConfigEntry segmentBytes = cfg.get("segment.bytes");
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, segmentBytes.source());
        assertEquals("1073741824", segmentBytes.value());

        admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "1234567"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("compression.type", null), AlterConfigOp.OpType.DELETE),
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND)))).all().get();
        cfg = admin.describeConfigs(List.of(res)).all().get().get(res);
        assertEquals("1234567", cfg.get("retention.ms").value());
        assertEquals("producer", cfg.get("compression.type").value());
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, cfg.get("compression.type").source());
        assertEquals(Set.of("delete", "compact"), Set.of(cfg.get("cleanup.policy").value().split(",")));

        ExecutionException bad = assertThrows(ExecutionException.class, () -> admin.incrementalAlterConfigs(Map.of(res,
                List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "soon"), AlterConfigOp.OpType.SET)))).all().get());
        assertInstanceOf(InvalidConfigurationException.class, bad.getCause());

        ConfigResource brokerRes = new ConfigResource(ConfigResource.Type.BROKER, "");
        admin.incrementalAlterConfigs(Map.of(brokerRes, List.of(new AlterConfigOp(
                new ConfigEntry("log.retention.ms", "86400000"), AlterConfigOp.OpType.SET)))).all().get();
        String other = Clients.unique("admin-configs-default");
        Clients.createTopic(admin, other, 1, Map.of());
        ConfigResource otherRes = new ConfigResource(ConfigResource.Type.TOPIC, other);
        ConfigEntry ret = admin.describeConfigs(List.of(otherRes)).all().get().get(otherRes).get("retention.ms");
        assertEquals("86400000", ret.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, ret.source());
        admin.incrementalAlterConfigs(Map.of(brokerRes, List.of(new AlterConfigOp(
                new ConfigEntry("log.retention.ms", null), AlterConfigOp.OpType.DELETE)))).all().get();
    }

    @Test
    void offsetsDeleteRecordsAndLogDirs() throws Exception {
        String topic = Clients.unique("admin-records");
        Clients.createTopic(admin, topic, 1, Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        produce(topic, 0, 50);
        ListOffsetsResult lo = admin.listOffsets(Map.of(tp, OffsetSpec.latest()));
        assertEquals(50, lo.partitionResult(tp).get().offset());
        assertEquals(0, admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset());
        assertEquals(49, admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).partitionResult(tp).get().offset());

        var deleted = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(20))).lowWatermarks().get(tp).get();
        assertEquals(20, deleted.lowWatermark());
        assertEquals(20, admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset());

        int brokerId = admin.describeCluster().nodes().get().iterator().next().id();
        Map<String, LogDirDescription> dirs = admin.describeLogDirs(List.of(brokerId)).allDescriptions().get().get(brokerId);
        assertEquals(1, dirs.size());
        LogDirDescription dir = dirs.values().iterator().next();
        assertTrue(dir.replicaInfos().containsKey(tp));
        assertTrue(dir.replicaInfos().get(tp).size() > 0);
        assertTrue(dir.totalBytes().isPresent() && dir.usableBytes().isPresent());
    }

    @Test
    void consumerGroups() throws Exception {
        String topic = Clients.unique("admin-groups");
        Clients.createTopic(admin, topic, 2, Map.of());
        produce(topic, 0, 10);
        produce(topic, 1, 10);
        String group = Clients.unique("admin-g");
        try (KafkaConsumer<String, String> c = Clients.consumer(broker.bootstrap(), group, Map.of())) {
            c.subscribe(List.of(topic));
            int n = 0;
            long deadline = System.currentTimeMillis() + 30_000;
            while (n < 20 && System.currentTimeMillis() < deadline) {
                n += c.poll(Duration.ofMillis(100)).count();
            }
            c.commitSync();
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
            assertEquals(GroupState.STABLE, d.groupState());
            assertEquals(1, d.members().size());
            assertEquals(2, d.members().iterator().next().assignment().topicPartitions().size());
            Collection<GroupListing> groups = admin.listGroups().all().get();
            assertTrue(groups.stream().anyMatch(g -> g.groupId().equals(group)));
        }
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        assertEquals(10, offsets.get(p0).offset());
        assertEquals(10, offsets.get(p1).offset());

        admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(3, "rewound"))).all().get();
        offsets = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        assertEquals(3, offsets.get(p0).offset());
        assertEquals("rewound", offsets.get(p0).metadata());

        admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all().get();
        offsets = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        assertFalse(offsets.containsKey(p1) && offsets.get(p1) != null);

        admin.deleteConsumerGroups(List.of(group)).all().get();
        Set<String> left = admin.listGroups().all().get().stream().map(GroupListing::groupId).collect(Collectors.toSet());
        assertFalse(left.contains(group));
    }

    /** Static members removed by the admin (LeaveGroup with members), KIP-848 group descriptions, features. */
    @Test
    void membersFeaturesAndConsumerProtocolGroups() throws Exception {
        String topic = Clients.unique("admin-members");
        Clients.createTopic(admin, topic, 2, Map.of());
        produce(topic, 0, 5);
        String classic = Clients.unique("admin-static");
        try (KafkaConsumer<String, String> c = Clients.consumer(broker.bootstrap(), classic,
                Map.of(org.apache.kafka.clients.consumer.ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "static-1"))) {
            c.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 30_000;
            while (c.assignment().isEmpty() && System.currentTimeMillis() < deadline) {
                c.poll(Duration.ofMillis(100));
            }
        }
        // the static member outlives its consumer until an admin removes it
        assertEquals(1, admin.describeConsumerGroups(List.of(classic)).all().get().get(classic).members().size());
        admin.removeMembersFromConsumerGroup(classic, new org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions(
                List.of(new org.apache.kafka.clients.admin.MemberToRemove("static-1")))).all().get();
        ConsumerGroupDescription after = admin.describeConsumerGroups(List.of(classic)).all().get().get(classic);
        assertEquals(0, after.members().size());
        assertEquals(GroupState.EMPTY, after.groupState());

        String modern = Clients.unique("admin-848");
        try (KafkaConsumer<String, String> c = Clients.consumer(broker.bootstrap(), modern,
                Map.of(org.apache.kafka.clients.consumer.ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer"))) {
            c.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 30_000;
            while (c.assignment().size() < 2 && System.currentTimeMillis() < deadline) {
                c.poll(Duration.ofMillis(100));
            }
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(modern)).all().get().get(modern);
            assertEquals(org.apache.kafka.common.GroupType.CONSUMER, d.type());
            assertEquals(GroupState.STABLE, d.groupState());
            assertEquals(1, d.members().size());
            assertEquals(2, d.members().iterator().next().assignment().topicPartitions().size());
            var listed = admin.listGroups(org.apache.kafka.clients.admin.ListGroupsOptions.forConsumerGroups()).all().get();
            assertTrue(listed.stream().anyMatch(g -> g.groupId().equals(modern)
                    && g.type().orElse(null) == org.apache.kafka.common.GroupType.CONSUMER));
        }
        var features = admin.describeFeatures().featureMetadata().get();
        assertTrue(features.finalizedFeatures() != null);
    }

    /** fenceProducers bumps the epoch of a transactional id; abortTransaction ends a hanging one (KIP-664). */
    @Test
    void fenceAndAbortTransactions() throws Exception {
        String topic = Clients.unique("admin-fence");
        Clients.createTopic(admin, topic, 1, Map.of());
        String id = Clients.unique("admin-fence-id");
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaProducer<String, String> p = Clients.producer(broker.bootstrap(),
                Map.of(org.apache.kafka.clients.producer.ProducerConfig.TRANSACTIONAL_ID_CONFIG, id))) {
            p.initTransactions();
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, "k", "v")).get();
            admin.fenceProducers(List.of(id)).all().get();
            ExecutionException e = assertThrows(ExecutionException.class, () -> {
                p.send(new ProducerRecord<>(topic, "k", "late")).get();
            });
            assertTrue(e.getCause() instanceof org.apache.kafka.common.errors.ProducerFencedException
                    || e.getCause() instanceof org.apache.kafka.common.errors.InvalidProducerEpochException, e.toString());
        }
        // the fenced transaction was aborted: nothing open, read_committed reaches the end
        var producers = admin.describeProducers(List.of(tp)).all().get().get(tp).activeProducers();
        assertTrue(producers.stream().noneMatch(s -> s.currentTransactionStartOffset().isPresent()), producers.toString());
        assertEquals(admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get().offset(),
                readCommittedEnd(tp));
    }

    /**
     * abortTransaction (WriteTxnMarkers, KIP-664): an operator ends a hanging transaction whose
     * producer went away; read_committed consumers move past it.
     */
    @Test
    void abortHangingTransaction() throws Exception {
        String topic = Clients.unique("admin-hanging");
        Clients.createTopic(admin, topic, 1, Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        KafkaProducer<String, String> p = Clients.producer(broker.bootstrap(),
                Map.of(org.apache.kafka.clients.producer.ProducerConfig.TRANSACTIONAL_ID_CONFIG, Clients.unique("hanging"),
                        org.apache.kafka.clients.producer.ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 600_000));
        p.initTransactions();
        p.beginTransaction();
        p.send(new ProducerRecord<>(topic, "k", "left open")).get();
        p.close(Duration.ZERO); // gone without ending its transaction
        var state = admin.describeProducers(List.of(tp)).all().get().get(tp).activeProducers().get(0);
        assertTrue(state.currentTransactionStartOffset().isPresent());
        admin.abortTransaction(new org.apache.kafka.clients.admin.AbortTransactionSpec(tp, state.producerId(),
                (short) state.producerEpoch(), state.coordinatorEpoch().orElse(-1))).all().get();
        var after = admin.describeProducers(List.of(tp)).all().get().get(tp).activeProducers();
        assertTrue(after.stream().noneMatch(s -> s.currentTransactionStartOffset().isPresent()), after.toString());
        assertEquals(2, readCommittedEnd(tp), "the record and the abort marker");
    }

    /** Where a read_committed consumer stands after seeking to the end (the last stable offset). */
    private long readCommittedEnd(TopicPartition tp) {
        try (KafkaConsumer<String, String> c = Clients.consumer(broker.bootstrap(), null,
                Map.of(org.apache.kafka.clients.consumer.ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"))) {
            c.assign(List.of(tp));
            c.seekToEnd(List.of(tp));
            return c.position(tp);
        }
    }
}
