#!/bin/sh
# examples/publish-curl.sh - publish through a gateway's HTTP API with curl.
#
#   PUSHGATE_API_KEY=dev-key sh examples/publish-curl.sh
#   PUSHGATE_URL=https://push.example.com CHANNEL=user:7 sh examples/publish-curl.sh
#
# Environment (defaults in brackets):
#   PUSHGATE_URL      any gateway node (or the load balancer)  [http://127.0.0.1:8080]
#   PUSHGATE_API_KEY  the gateways' --api-key                  [dev-key, as scripts/run.sh]
#   CHANNEL           the pushgate channel                     [user:42]
#
# Two calls, both with history (the gateway runs FCALL for you):
#   1. {"channel":"$CHANNEL","event":"order.shipped","data":{"order":7}}
#      -> {"id":"..."}
#   2. the same message to several channels at once: "channels" instead of
#      "channel", here ["news", "$CHANNEL"] with data "maintenance at 22:00"
#      -> {"id":"<last>","ids":["<news>","<$CHANNEL>"]}
# Each answer is printed on its own line; curl exits non-zero on an HTTP
# error (401 wrong key, 400 bad body, 503 Redis down...), and so does this.
set -eu

URL=${PUSHGATE_URL:-http://127.0.0.1:8080}
KEY=${PUSHGATE_API_KEY:-dev-key}
CHANNEL=${CHANNEL:-user:42}

publish() {
    curl -sS --fail-with-body --max-time 10 \
         -H "Authorization: Bearer $KEY" \
         -H 'Content-Type: application/json' \
         -d "$1" "$URL/api/publish"
    echo
}

publish '{"channel":"'"$CHANNEL"'","event":"order.shipped","data":{"order":7}}'
publish '{"channels":["news","'"$CHANNEL"'"],"data":"maintenance at 22:00"}'
