#!/bin/sh
# An external extension written for the tests as a shell script with curl: it registers for INVOKE
# and SHUTDOWN under its file name and says each event it gets, until SHUTDOWN.
set -eu
NAME=$(basename "$0")
API="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
HEADERS=$(mktemp)
curl -sS -D "$HEADERS" -o /dev/null -XPOST "$API/register" -H "Lambda-Extension-Name: $NAME" \
    -d '{"events":["INVOKE","SHUTDOWN"]}'
ID=$(grep -i '^Lambda-Extension-Identifier:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)
rm -f "$HEADERS"
echo "$NAME registered $ID"
while true; do
    EVENT=$(curl -sS "$API/event/next" -H "Lambda-Extension-Identifier: $ID")
    echo "$NAME event $EVENT"
    case "$EVENT" in *'"SHUTDOWN"'*) exit 0 ;; esac
done
