// examples/go/publish.go - publish to pushgate from Go with redigo.
//
// With Debian's packages (no module download; what the tests use):
//
//	apt-get install golang-go golang-github-gomodule-redigo-dev
//	cd examples/go && GO111MODULE=off GOPATH=/usr/share/gocode go run publish.go
//
// With Go modules and network access:
//
//	cd examples/go && go mod init example && go get github.com/gomodule/redigo/redis && go run .
//
// Environment (defaults in brackets):
//
//	REDIS_URL        the Redis the gateways use   [redis://127.0.0.1:6379/0]
//	PUSHGATE_PREFIX  the gateways' --prefix       [pushgate:]
//	CHANNEL          the pushgate channel         [user:42]
//
// Sends {"event":"order.shipped","data":{"order":7}} twice: with PUBLISH (live
// only, no id) and with FCALL (kept in history, returns the message id). At
// least one gateway must have started once against this Redis, so that the
// function is loaded. (With go-redis v9 the same two calls are
// rdb.Publish(ctx, channel, payload) and rdb.FCall(ctx, fn, nil, channel, payload).)
package main

import (
	"fmt"
	"os"
	"regexp"

	"github.com/gomodule/redigo/redis"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	url := env("REDIS_URL", "redis://127.0.0.1:6379/0")
	prefix := env("PUSHGATE_PREFIX", "pushgate:")
	channel := env("CHANNEL", "user:42")
	// pushgate: -> pushgate_publish (every character other than a letter or
	// digit becomes "_").
	fn := regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(prefix, "_") + "publish"

	conn, err := redis.DialURL(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "redis:", err)
		os.Exit(1)
	}
	defer conn.Close()
	payload := `{"event":"order.shipped","data":{"order":7}}`

	// Live only: the full Redis channel, with the prefix.
	nodes, err := redis.Int(conn.Do("PUBLISH", prefix+channel, payload))
	if err != nil {
		fmt.Fprintln(os.Stderr, "PUBLISH:", err)
		os.Exit(1)
	}
	fmt.Printf("PUBLISH %s%s -> %d node(s)\n", prefix, channel, nodes)

	// With history: the pushgate channel name, without the prefix; the answer
	// is the new id as a string.
	id, err := redis.String(conn.Do("FCALL", fn, 0, channel, payload))
	if err != nil {
		fmt.Fprintln(os.Stderr, "FCALL:", err)
		os.Exit(1)
	}
	fmt.Printf("FCALL %s %s -> id %s\n", fn, channel, id)
}
