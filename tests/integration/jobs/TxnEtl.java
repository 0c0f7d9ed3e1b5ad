// A consume-transform-produce job on Kafka's Java client (run as a single source file:
// `java -cp <kafka-clients classpath> TxnEtl.java BOOTSTRAP TXN_ID GROUP N`), for tests that
// kill brokers while it runs. It reads "src" (read_committed, group GROUP), writes
// "out-<value>" to the same partition of "dst" and commits the consumed offsets inside each
// transaction. It prints "processed <count>" after each committed transaction and "done
// <count> aborts <aborts>" at the end; a transaction that fails abortably (timeout, coordinator
// loss) is aborted and its input re-read from the committed offsets, as Kafka's docs prescribe.
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.*;
import org.apache.kafka.common.serialization.*;

public class TxnEtl {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], txnId = args[1], group = args[2];
        int n = Integer.parseInt(args[3]);
        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "50");
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        pp.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "60000");
        pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        int done = 0, aborts = 0;
        long deadline = System.currentTimeMillis() + 240_000;
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(cp, new ByteArrayDeserializer(), new ByteArrayDeserializer());
             KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(pp, new ByteArraySerializer(), new ByteArraySerializer())) {
            c.subscribe(List.of("src"));
            p.initTransactions();
            while (done < n && System.currentTimeMillis() < deadline) {
                ConsumerRecords<byte[], byte[]> records = c.poll(Duration.ofSeconds(1));
                if (records.isEmpty()) continue;
                try {
                    p.beginTransaction();
                    for (ConsumerRecord<byte[], byte[]> r : records) {
                        byte[] out = ("out-" + new String(r.value())).getBytes();
                        p.send(new ProducerRecord<>("dst", r.partition(), null, out));
                    }
                    Map<TopicPartition, OffsetAndMetadata> positions = new HashMap<>();
                    for (TopicPartition tp : c.assignment()) positions.put(tp, new OffsetAndMetadata(c.position(tp)));
                    p.sendOffsetsToTransaction(positions, c.groupMetadata());
                    while (true) {
                        try {
                            p.commitTransaction();
                            break;
                        } catch (TimeoutException e) {
                            // Retrying the commit is allowed after a timeout (KIP-691 wording).
                            System.out.println("commit timed out, retrying: " + e);
                        }
                    }
                    done += records.count();
                    System.out.println("processed " + done);
                } catch (ProducerFencedException | UnsupportedVersionException
                         | AuthorizationException e) {
                    throw e;
                } catch (KafkaException e) {
                    System.out.println("aborting: " + e);
                    p.abortTransaction();
                    aborts++;
                    Map<TopicPartition, OffsetAndMetadata> committed = c.committed(c.assignment());
                    for (TopicPartition tp : c.assignment()) {
                        OffsetAndMetadata o = committed.get(tp);
                        c.seek(tp, o == null ? 0 : o.offset());
                    }
                }
            }
        }
        System.out.println("done " + done + " aborts " + aborts);
        System.exit(done == n ? 0 : 1);
    }
}
