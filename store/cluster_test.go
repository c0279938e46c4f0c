package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestPreferredSpreadsAndMovesOnlyAShare(t *testing.T) {
	servers := make([]string, 3000)
	for i := range servers {
		servers[i] = fmt.Sprintf("srv-%04d", i)
	}
	three := []string{"a", "b", "c"}
	count := map[string]int{}
	for _, s := range servers {
		count[Preferred(s, three)]++
	}
	for _, r := range three {
		if count[r] < 800 || count[r] > 1200 {
			t.Fatalf("replica %s preferred for %d of 3000 servers: %v", r, count[r], count)
		}
	}
	// c leaves: only c's servers move.
	moved := 0
	for _, s := range servers {
		before, after := Preferred(s, three), Preferred(s, []string{"a", "b"})
		if before != after {
			if before != "c" {
				t.Fatalf("%s moved from %s to %s though %s is still live", s, before, after, before)
			}
			moved++
		}
	}
	if moved != count["c"] {
		t.Fatalf("%d servers moved, c had %d", moved, count["c"])
	}
}

// Three replicas on one database hold every server exactly once; one that
// stops renewing loses its servers to the others once its lease runs out.
func TestShardHoldsEachServerOnceAndTakesOverADeadReplica(t *testing.T) {
	db := openPostgres(t, Options{})
	ctx := context.Background()
	const lease = 300 * time.Millisecond
	servers := make([]string, 60)
	for i := range servers {
		servers[i] = fmt.Sprintf("srv-%02d", i)
	}
	round := func(replicas ...string) map[string][]string {
		t.Helper()
		var live []string
		for _, r := range replicas {
			var err error
			if live, err = db.Heartbeat(ctx, r, lease); err != nil {
				t.Fatal(err)
			}
		}
		held := map[string][]string{}
		for _, r := range replicas {
			h, err := db.Shard(ctx, r, servers, live, lease)
			if err != nil {
				t.Fatal(err)
			}
			held[r] = h
		}
		return held
	}
	// Replica a starts alone and takes everything.
	if h := round("a"); len(h["a"]) != len(servers) {
		t.Fatalf("a alone holds %d of %d", len(h["a"]), len(servers))
	}
	// b and c join; a gives up their share, they take it a round later.
	round("a", "b", "c")
	held := round("a", "b", "c")
	assertPartition(t, servers, held)
	if len(held["b"]) == 0 || len(held["c"]) == 0 {
		t.Fatalf("joiners hold nothing: %v", held)
	}
	owners, err := db.Owners(ctx)
	if err != nil || len(owners) != len(servers) {
		t.Fatalf("Owners: %d, %v", len(owners), err)
	}
	// c dies: it stops renewing. Until its lease runs out nobody else
	// takes its servers; after, a and b hold everything between them.
	dead := held["c"]
	h := round("a", "b")
	for _, s := range dead {
		if slices.Contains(h["a"], s) || slices.Contains(h["b"], s) {
			t.Fatalf("%s taken while c's lease still runs", s)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		h = round("a", "b")
		if len(h["a"])+len(h["b"]) == len(servers) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c's %d servers not taken over: a %d, b %d", len(dead), len(h["a"]), len(h["b"]))
		}
		time.Sleep(lease / 3) // the heartbeat period a replica renews at
	}
	delete(h, "c")
	assertPartition(t, servers, h)
	// A clean stop hands over at once.
	if err := db.Release(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	live, _ := db.Heartbeat(ctx, "a", lease)
	if !slices.Equal(live, []string{"a"}) {
		// b's heartbeat row went with its release; c's has aged out.
		t.Logf("live after release: %v", live)
	}
	ha, err := db.Shard(ctx, "a", servers, []string{"a"}, lease)
	if err != nil || len(ha) != len(servers) {
		t.Fatalf("after b released, a holds %d: %v", len(ha), err)
	}
}

func assertPartition(t *testing.T, servers []string, held map[string][]string) {
	t.Helper()
	owner := map[string]string{}
	for r, list := range held {
		for _, s := range list {
			if o, ok := owner[s]; ok {
				t.Fatalf("%s held by both %s and %s", s, o, r)
			}
			owner[s] = r
		}
	}
	for _, s := range servers {
		if owner[s] == "" {
			t.Fatalf("%s held by nobody: %v", s, held)
		}
	}
}

func TestClusterMethodsRefuseBbolt(t *testing.T) {
	db, err := Open(t.TempDir()+"/r.db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Heartbeat(context.Background(), "a", time.Second); err != ErrNotShared {
		t.Fatalf("Heartbeat on bbolt: %v", err)
	}
	if o, err := db.Owners(context.Background()); o != nil || err != nil {
		t.Fatalf("Owners on bbolt: %v, %v", o, err)
	}
}

// Two processes given the same replica name (a config copied between
// hosts): the second is refused while the first heartbeats, takes no
// lease, and its stop releases nothing of the first's.
func TestReplicaNameHeldByOneProcess(t *testing.T) {
	first := openPostgres(t, Options{})
	second := reopenBackend(t, first, Options{})
	ctx := context.Background()
	const lease = time.Minute
	servers := []string{"s1", "s2", "s3"}
	live, err := first.Heartbeat(ctx, "a", lease)
	if err != nil {
		t.Fatal(err)
	}
	if held, err := first.Shard(ctx, "a", servers, live, lease); err != nil || len(held) != 3 {
		t.Fatalf("first holds %v, %v", held, err)
	}
	if _, err := second.Heartbeat(ctx, "a", lease); !errors.Is(err, ErrReplicaNameTaken) {
		t.Fatalf("second heartbeat under the same name: %v, want ErrReplicaNameTaken", err)
	}
	if err := second.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	owners, err := first.Owners(ctx)
	if err != nil || len(owners) != 3 {
		t.Fatalf("after the refused one stopped: owners %v, %v", owners, err)
	}
	// Its own heartbeat still goes through.
	if _, err := first.Heartbeat(ctx, "a", lease); err != nil {
		t.Fatal(err)
	}
}
