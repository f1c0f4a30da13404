package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast/internal/testkit/natstest"
)

// A three-node cluster keeps an R3 stream writable when its leader is
// killed, and the node comes back on its ports with its files.
func TestCluster_StreamSurvivesItsLeadersKill(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := njs.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, njs.StreamConfig{Name: "s", Subjects: []string{"s.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	publish := func(id string) {
		t.Helper()
		for ctx.Err() == nil {
			if _, err := js.Publish(ctx, "s.x", []byte(id), njs.WithMsgID(id)); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("publish %s never succeeded", id)
	}
	publish("before")
	leader := c.StreamLeader("s")
	c.Kill(leader)
	publish("during")
	c.Start(leader)
	c.WaitReady()
	publish("after")
	info, err := c.StreamInfo("s")
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 || info.Config.Replicas != 3 {
		t.Fatalf("stream holds %d messages at R%d, want 3 at R3", info.State.Msgs, info.Config.Replicas)
	}
}
