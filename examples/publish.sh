#!/bin/sh
# examples/publish.sh - publish to pushgate from a shell with redis-cli.
#
#   sh examples/publish.sh
#   REDIS_URL=redis://:secret@10.0.0.5:6379/0 CHANNEL=news sh examples/publish.sh
#
# Environment (defaults in brackets):
#   REDIS_URL        the Redis the gateways use   [redis://127.0.0.1:6379/0]
#   PUSHGATE_PREFIX  the gateways' --prefix       [pushgate:]
#   CHANNEL          the pushgate channel         [user:42]
#
# Sends {"event":"order.shipped","data":{"order":7}} twice: once with PUBLISH
# (live only: reaches the clients connected now, no id) and once with FCALL
# (kept in the channel's history, given an id, recoverable with since=).
# Needs redis-cli (Debian: redis-tools) and at least one gateway started once
# against this Redis, so that the function is loaded.
set -eu

REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
PREFIX=${PUSHGATE_PREFIX:-pushgate:}
CHANNEL=${CHANNEL:-user:42}
# The function is the prefix with every non-alphanumeric turned into "_",
# then "publish": pushgate: -> pushgate_publish.
FN="$(printf '%s' "$PREFIX" | sed 's/[^A-Za-z0-9]/_/g')publish"
PAYLOAD='{"event":"order.shipped","data":{"order":7}}'

# PUBLISH takes the full Redis channel (with the prefix); it answers how many
# gateway nodes received it.
n=$(redis-cli -u "$REDIS_URL" PUBLISH "$PREFIX$CHANNEL" "$PAYLOAD")
echo "PUBLISH $PREFIX$CHANNEL -> $n node(s)"

# FCALL takes the pushgate channel name (without the prefix); it answers the
# new message id.
id=$(redis-cli -u "$REDIS_URL" FCALL "$FN" 0 "$CHANNEL" "$PAYLOAD")
case "$id" in
    ''|*[!0-9]*) echo "FCALL $FN failed: $id (has a gateway with --prefix $PREFIX started against this Redis?)" >&2; exit 1 ;;
esac
echo "FCALL $FN $CHANNEL -> id $id"
