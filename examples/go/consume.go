// examples/go/consume.go - read pushgate's events stream from Go with redigo.
//
// With Debian's packages (no module download; what the tests use):
//
//	apt-get install golang-go golang-github-gomodule-redigo-dev
//	cd examples/go && GO111MODULE=off GOPATH=/usr/share/gocode go run consume.go
//
// With Go modules and network access:
//
//	cd examples/go && go mod init example && go get github.com/gomodule/redigo/redis && go run consume.go
//
// Needs Redis 7 (XAUTOCLAIM) and gateways started with --events. Prints one
// line per event on stdout, for example
//
//	connect user=42 conn=7 node=gw-a id=1764560000000-0
//	message user=42 conn=7 data={"text":"hi"} node=gw-a id=1764560000002-0
//	disconnect user=42 conn=7 code=1000 reason="bye" node=gw-a id=1764560000003-0
//
// (user= is empty for an anonymous connection; data is the client's JSON as
// the gateway stored it; reason is quoted), and what it does on stderr. The
// same program as examples/consume.py and examples/node/consume.js.
//
// Environment (defaults in brackets):
//
//	REDIS_URL        the Redis the gateways use           [redis://127.0.0.1:6379/0]
//	PUSHGATE_PREFIX  the gateways' --prefix               [pushgate:]
//	GROUP            this backend's consumer group        [backend]
//	CONSUMER         this worker's name within the group  [worker-1]
//	CLAIM_IDLE_MS    take over entries another worker read and left
//	                 unacknowledged for this long         [60000]
//	MAX_EVENTS       exit after this many events; 0 = run forever  [0]
//	TIMEOUT          exit after this many seconds; 0 = run forever [0]
//
// Delivery is at least once per group: an entry is acknowledged (XACK) only
// after it was handled, so a worker that dies in between leaves it pending,
// and it is handled again once it has been pending for CLAIM_IDLE_MS, by the
// first worker of the group that looks (each looks when it starts and
// whenever the stream is idle). Make handlers idempotent, keyed by the entry
// id. Workers of one group share the events between them; every group gets
// all of them. (With go-redis v9: rdb.XGroupCreateMkStream, rdb.XReadGroup,
// rdb.XAutoClaim and rdb.XAck.)
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	n, err := strconv.Atoi(env(name, strconv.Itoa(def)))
	if err != nil {
		fail(name, err)
	}
	return n
}

func fail(what string, err error) {
	fmt.Fprintln(os.Stderr, what+":", err)
	os.Exit(1)
}

type consumer struct {
	conn                   redis.Conn
	stream, group, name    string
	claimIdleMs, max, done int
}

// describe is one line for one event: the fields its type has, in a fixed order.
func describe(id string, f map[string]string) string {
	parts := []string{f["type"], "user=" + f["user"], "conn=" + f["conn"]}
	if v, ok := f["channel"]; ok {
		parts = append(parts, "channel="+v)
	}
	if v, ok := f["code"]; ok {
		parts = append(parts, "code="+v)
	}
	if v, ok := f["reason"]; ok {
		parts = append(parts, "reason="+strconv.Quote(v))
	}
	if v, ok := f["data"]; ok {
		parts = append(parts, "data="+v)
	}
	parts = append(parts, "node="+f["node"], "id="+id)
	return strings.Join(parts, " ")
}

// room is how many entries to ask for (COUNT): no more than this run will
// handle, so that none is read and then left unacknowledged.
func (c *consumer) room() int {
	if c.max > 0 && c.max-c.done < 100 {
		return c.max - c.done
	}
	return 100
}

func (c *consumer) handle(id string, fields map[string]string) {
	// Your backend's work goes here (keyed by id: it may come twice).
	fmt.Println(describe(id, fields))
	// Acknowledged only once handled: at least once, never at most once.
	if _, err := c.conn.Do("XACK", c.stream, c.group, id); err != nil {
		fail("XACK", err)
	}
	c.done++
}

// handleEntries handles [[id, [field, value, ...]], ...]; an entry the stream
// no longer holds (nil fields) is skipped.
func (c *consumer) handleEntries(entries []interface{}) {
	for _, e := range entries {
		kv, err := redis.Values(e, nil)
		if err != nil || len(kv) != 2 {
			fail("entry", fmt.Errorf("unexpected %v", e))
		}
		id, _ := redis.String(kv[0], nil)
		fields, err := redis.StringMap(kv[1], nil)
		if err == redis.ErrNil {
			continue
		}
		if err != nil {
			fail("entry "+id, err)
		}
		c.handle(id, fields)
	}
}

// claimStale takes over the entries of this group read but not acknowledged
// for CLAIM_IDLE_MS (a worker died between XREADGROUP and XACK, maybe this
// one) and handles them. Redis 7 drops from the pending list the ids the
// stream no longer holds.
func (c *consumer) claimStale() {
	cursor := "0-0"
	for c.room() > 0 {
		res, err := redis.Values(c.conn.Do("XAUTOCLAIM", c.stream, c.group, c.name,
			c.claimIdleMs, cursor, "COUNT", c.room()))
		if err == nil && len(res) < 2 {
			err = fmt.Errorf("unexpected reply %v", res)
		}
		if err != nil {
			fail("XAUTOCLAIM", err)
		}
		cursor, _ = redis.String(res[0], nil)
		entries, _ := redis.Values(res[1], nil)
		c.handleEntries(entries)
		if cursor == "0-0" {
			return
		}
	}
}

func main() {
	prefix := env("PUSHGATE_PREFIX", "pushgate:")
	timeout := time.Duration(envInt("TIMEOUT", 0)) * time.Second
	conn, err := redis.DialURL(env("REDIS_URL", "redis://127.0.0.1:6379/0"))
	if err != nil {
		fail("redis", err)
	}
	defer conn.Close()
	c := &consumer{conn: conn, stream: prefix + "events", group: env("GROUP", "backend"),
		name: env("CONSUMER", "worker-1"), claimIdleMs: envInt("CLAIM_IDLE_MS", 60000),
		max: envInt("MAX_EVENTS", 0)}

	// "$": only events written from now on; "0" would also replay everything
	// the stream still holds (it is capped by --events-max-len).
	_, err = conn.Do("XGROUP", "CREATE", c.stream, c.group, "$", "MKSTREAM")
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") { // exists already: fine
		fail("XGROUP CREATE", err)
	}
	fmt.Fprintf(os.Stderr, "reading %s as %s/%s\n", c.stream, c.group, c.name)

	deadline := time.Now().Add(timeout)
	c.claimStale()
	for c.room() > 0 {
		block := 5000 * time.Millisecond
		if timeout > 0 {
			if left := time.Until(deadline); left < block {
				block = left
			}
			if block < time.Millisecond { // BLOCK 0 would wait forever
				fmt.Fprintf(os.Stderr, "timeout after %v\n", timeout)
				break
			}
		}
		// ">": entries never delivered to this group.
		res, err := redis.Values(conn.Do("XREADGROUP", "GROUP", c.group, c.name,
			"COUNT", c.room(), "BLOCK", block.Milliseconds(), "STREAMS", c.stream, ">"))
		if err == redis.ErrNil {
			c.claimStale() // idle: a good time to pick up what others left
			continue
		}
		if err != nil {
			fail("XREADGROUP", err)
		}
		for _, s := range res { // [[stream, entries]]
			kv, _ := redis.Values(s, nil)
			if len(kv) == 2 {
				entries, _ := redis.Values(kv[1], nil)
				c.handleEntries(entries)
			}
		}
	}
	fmt.Fprintf(os.Stderr, "%d event(s) handled\n", c.done)
}
