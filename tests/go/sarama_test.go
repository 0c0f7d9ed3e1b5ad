package compat

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V3_7_0_0
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Compression = sarama.CompressionZSTD
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Enable = true
	c.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	return c
}

type collect struct {
	mu   sync.Mutex
	seen map[string]int
	parts map[int32]int64
	want int
	done chan struct{}
	once sync.Once
}

func (h *collect) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *collect) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *collect) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		h.mu.Lock()
		h.seen[string(m.Value)]++
		h.parts[m.Partition] = m.Offset
		n := len(h.seen)
		h.mu.Unlock()
		s.MarkMessage(m, "")
		if n >= h.want {
			h.once.Do(func() { close(h.done) })
		}
	}
	return nil
}

// sarama: idempotent zstd SyncProducer, a consumer group committing, ClusterAdmin.
func TestSarama(t *testing.T) {
	b := startBroker(t)
	cfg := saramaConfig()
	admin, err := sarama.NewClusterAdmin([]string{b.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	topic, group := unique("sarama"), unique("sarama-g")
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducer([]string{b.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%5)),
			Value: sarama.StringEncoder(fmt.Sprintf("v%d", i))}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	p.Close()

	cg, err := sarama.NewConsumerGroup([]string{b.addr}, group, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &collect{seen: map[string]int{}, parts: map[int32]int64{}, want: 300, done: make(chan struct{})}
	c, cancel := context.WithCancel(context.Background())
	go func() {
		for c.Err() == nil {
			if err := cg.Consume(c, []string{topic}, h); err != nil && c.Err() == nil {
				t.Errorf("consume: %v", err)
				return
			}
		}
	}()
	select {
	case <-h.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("consumed %d of 300: %v", len(h.seen), h.parts)
	}
	cancel()
	cg.Close() // commits what was marked
	for v, n := range h.seen {
		if n != 1 {
			t.Errorf("%s consumed %d times", v, n)
		}
	}
	offsets, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, b := range offsets.Blocks[topic] {
		sum += b.Offset
	}
	if sum != 300 {
		t.Fatalf("committed offsets sum to %d, want 300", sum)
	}
	groups, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil || len(groups) != 1 || groups[0].State != "Empty" {
		t.Fatalf("describe group: %v %+v", err, groups)
	}
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	if err != nil || len(entries) == 0 {
		t.Fatalf("describe config: %v", err)
	}
	if err := admin.DeleteTopic(topic); err != nil {
		t.Fatal(err)
	}
}
