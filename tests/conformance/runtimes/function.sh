# The tutorial's handler, plus two events of our own: "big" answers 2 MB, "fail" fails (set -e
# in the bootstrap then ends the runtime).
function handler () {
  EVENT_DATA=$1
  echo "$EVENT_DATA" 1>&2;
  case "$EVENT_DATA" in
    *big*) head -c 2097152 /dev/zero | tr '\0' x ;;
    *fail*) return 3 ;;
    *) RESPONSE="Echoing request: '$EVENT_DATA'"; echo $RESPONSE ;;
  esac
}
