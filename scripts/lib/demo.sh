# Sourced by the scripts that test a running `iocd demo` (api-fuzz, browser-test).
#
# start_demo IOCD WORK [ARGS...]: starts `IOCD demo ARGS...` in WORK with the HTTP API on a free
#   loopback port (IOC__HTTP__LISTEN) and whatever IOC__ settings the caller exported; waits
#   until it prints its admin token and address and /healthz answers 200. Sets demo_pid,
#   demo_token and demo_url; its output is in WORK/iocd.out and WORK/iocd.err.
# stop_demo: stops it (SIGINT, SIGKILL after 10 s) if it runs.
# free_port: a free loopback TCP port.

demo_pid=""

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

start_demo() {
  local iocd=$1 work=$2
  shift 2
  (cd "$work" && IOC__HTTP__LISTEN=127.0.0.1:0 exec "$iocd" demo "$@" >"$work/iocd.out" 2>"$work/iocd.err") &
  demo_pid=$!
  demo_token="" demo_url=""
  for _ in $(seq 1 300); do
    kill -0 "$demo_pid" 2>/dev/null || { echo "iocd demo exited early:" >&2; tail -n 30 "$work/iocd.err" >&2; return 1; }
    demo_token=$(sed -n 's/^ *api token: *\(ioc_[A-Za-z0-9_-]*\).*/\1/p' "$work/iocd.out" | head -n 1)
    demo_url=$(sed -n 's#^ *health: *\(http://[^ ]*\)/healthz.*#\1#p' "$work/iocd.out" | head -n 1)
    [ -n "$demo_token" ] && [ -n "$demo_url" ] && break
    sleep 0.2
  done
  [ -n "$demo_token" ] && [ -n "$demo_url" ] || { echo "iocd demo did not print its token and address" >&2; return 1; }
  local code=""
  for _ in $(seq 1 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$demo_url/healthz" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.2
  done
  echo "$demo_url/healthz answers $code" >&2
  return 1
}

stop_demo() {
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -INT "$demo_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$demo_pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  demo_pid=""
}
