package compat

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func client(t *testing.T, b *broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func createTopic(t *testing.T, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	r, err := adm.CreateTopic(ctx(t, 20*time.Second), partitions, 1, configs, topic)
	if err != nil || r.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, r.Err)
	}
}

// Produce with every codec, consume in a group, commit; offsets dense and per-key order kept.
func TestFranzProduceConsumeGroup(t *testing.T) {
	b := startBroker(t)
	adm := kadm.NewClient(client(t, b))
	topic, group := unique("franz"), unique("franz-g")
	createTopic(t, adm, topic, 3, nil)
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		p := client(t, b, kgo.ProducerBatchCompression(codec), kgo.RequiredAcks(kgo.AllISRAcks()))
		var rs []*kgo.Record
		for i := 0; i < 200; i++ {
			rs = append(rs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i%7)), Value: []byte(fmt.Sprintf("%d", i))})
		}
		if err := p.ProduceSync(ctx(t, 30*time.Second), rs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	c := client(t, b, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	last := map[int32]int64{}
	deadline := time.Now().Add(60 * time.Second)
	for got < 1000 && time.Now().Before(deadline) {
		fs := c.PollFetches(ctx(t, 5*time.Second))
		if errs := fs.Errors(); len(errs) > 0 && !errors.Is(errs[0].Err, context.DeadlineExceeded) {
			t.Fatalf("fetch: %v", errs)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if prev, ok := last[r.Partition]; ok && r.Offset != prev+1 {
				t.Errorf("partition %d: offset %d after %d", r.Partition, r.Offset, prev)
			}
			last[r.Partition] = r.Offset
			got++
		})
		if err := c.CommitUncommittedOffsets(ctx(t, 10*time.Second)); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	if got != 1000 {
		t.Fatalf("consumed %d of 1000", got)
	}
	offsets, err := adm.FetchOffsets(ctx(t, 10*time.Second), group)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offsets.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 1000 {
		t.Fatalf("committed offsets sum to %d, want 1000", sum)
	}
}

// GroupTransactSession: consume-transform-produce, exactly once into a read_committed view.
func TestFranzGroupTransactSession(t *testing.T) {
	b := startBroker(t)
	adm := kadm.NewClient(client(t, b))
	in, out, group := unique("franz-in"), unique("franz-out"), unique("franz-txn-g")
	createTopic(t, adm, in, 2, nil)
	createTopic(t, adm, out, 2, nil)
	p := client(t, b)
	var rs []*kgo.Record
	for i := 0; i < 500; i++ {
		rs = append(rs, &kgo.Record{Topic: in, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("%d", i))})
	}
	if err := p.ProduceSync(ctx(t, 30*time.Second), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(b.addr), kgo.TransactionalID(unique("franz-txn")),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(in), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RequireStableFetchOffsets(), kgo.FetchMaxBytes(20_000), kgo.FetchMaxPartitionBytes(10_000))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	processed, rounds := 0, 0
	deadline := time.Now().Add(90 * time.Second)
	for processed < 500 && time.Now().Before(deadline) {
		fs := sess.PollFetches(ctx(t, 5*time.Second))
		n := fs.NumRecords()
		if n == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			sess.Produce(context.Background(), &kgo.Record{Topic: out, Key: r.Key, Value: append([]byte("x"), r.Value...)}, nil)
		})
		rounds++
		abort := rounds == 1 // one aborted round: its output never seen, its input processed again
		committed, err := sess.End(ctx(t, 30*time.Second), kgo.TransactionEndTry(!abort))
		if err != nil {
			t.Fatalf("end: %v", err)
		}
		if committed {
			processed += n
		}
	}
	if processed != 500 || rounds < 2 {
		t.Fatalf("processed %d of 500 in %d rounds (the first aborted)", processed, rounds)
	}
	rc := client(t, b, kgo.ConsumeTopics(out), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	keys := map[string]int{}
	deadline = time.Now().Add(30 * time.Second)
	for len(keys) < 500 && time.Now().Before(deadline) {
		rc.PollFetches(ctx(t, 2*time.Second)).EachRecord(func(r *kgo.Record) { keys[string(r.Key)]++ })
	}
	for k, n := range keys {
		if n != 1 {
			t.Errorf("key %s seen %d times in the committed output", k, n)
		}
	}
	if len(keys) != 500 {
		t.Fatalf("committed output has %d keys, want 500", len(keys))
	}
}

// kadm: the admin surface franz-go users call.
func TestFranzAdmin(t *testing.T) {
	b := startBroker(t)
	adm := kadm.NewClient(client(t, b))
	c := ctx(t, 60*time.Second)
	topic := unique("kadm")
	retention := "3600000"
	createTopic(t, adm, topic, 2, map[string]*string{"retention.ms": &retention})
	if _, err := adm.UpdatePartitions(c, 3, topic); err != nil {
		t.Fatal(err)
	}
	td, err := adm.ListTopics(c, topic)
	if err != nil || len(td[topic].Partitions) != 3 {
		t.Fatalf("list topics: %v %+v", err, td)
	}
	cfgs, err := adm.DescribeTopicConfigs(c, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, cfg := range rc.Configs {
		if cfg.Key == "retention.ms" && cfg.MaybeValue() == "3600000" && cfg.Source.String() == "DYNAMIC_TOPIC_CONFIG" {
			found = true
		}
	}
	if !found {
		t.Fatalf("retention.ms not described as set: %+v", rc.Configs)
	}
	zstd := "zstd"
	if _, err := adm.AlterTopicConfigs(c, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "compression.type", Value: &zstd}}, topic); err != nil {
		t.Fatal(err)
	}
	p := client(t, b)
	var rs []*kgo.Record
	for i := 0; i < 30; i++ {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("v")})
	}
	p2 := client(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	_ = p
	if err := p2.ProduceSync(c, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(c, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup(topic, 0); o.Offset != 30 {
		t.Fatalf("end offset %d, want 30", o.Offset)
	}
	// OffsetsForLeaderEpoch (KIP-101/320): epoch 0 is the current one and ends at the log end;
	// an epoch newer than any known is undefined.
	var le kadm.OffsetForLeaderEpochRequest
	le.Add(topic, 0, 0)
	le.Add(topic, 1, 7)
	eps, err := adm.OffsetForLeaderEpoch(c, le)
	if err != nil {
		t.Fatal(err)
	}
	if e := eps[topic][0]; e.Err != nil || e.LeaderEpoch != 0 || e.EndOffset != 30 {
		t.Fatalf("epoch 0 of partition 0: %+v", e)
	}
	if e := eps[topic][1]; e.Err != nil || e.LeaderEpoch != -1 || e.EndOffset != -1 {
		t.Fatalf("epoch 7 of partition 1: %+v", e)
	}
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: topic, Partition: 0, At: 10})
	dr, err := adm.DeleteRecords(c, del)
	if err != nil || dr.Error() != nil {
		t.Fatalf("delete records: %v %v", err, dr.Error())
	}
	starts, err := adm.ListStartOffsets(c, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := starts.Lookup(topic, 0); o.Offset != 10 {
		t.Fatalf("start offset %d, want 10", o.Offset)
	}
	group := unique("kadm-g")
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: 25})
	if _, err := adm.CommitOffsets(c, group, commit); err != nil {
		t.Fatal(err)
	}
	groups, err := adm.ListGroups(c)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(groups.Groups(), group) {
		t.Fatalf("group %s not listed in %v", group, groups.Groups())
	}
	lag, err := adm.Lag(c, group)
	if err != nil {
		t.Fatal(err)
	}
	if l := lag[group].Lag.TotalByTopic()[topic].Lag; l != 5 {
		t.Fatalf("lag %d, want 5", l)
	}
	dg, err := adm.DeleteGroup(c, group)
	if err != nil || dg.Err != nil {
		t.Fatalf("delete group: %v %v", err, dg.Err)
	}
	brokers, err := adm.ListBrokers(c)
	if err != nil || len(brokers) != 1 {
		t.Fatalf("brokers: %v %v", err, brokers)
	}
	if _, err := adm.DeleteTopics(c, topic); err != nil {
		t.Fatal(err)
	}
}

func contains(xs []string, x string) bool {
	sort.Strings(xs)
	i := sort.SearchStrings(xs, x)
	return i < len(xs) && xs[i] == x
}
