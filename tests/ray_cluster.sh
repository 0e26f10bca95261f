#!/bin/bash
# Run by tests/test_ray_cluster.py inside `unshare --net --pid --fork --mount-proc` (as root): a
# network namespace where only lo is up, so Ray's node address is 127.0.0.1 and no traffic
# leaves loopback; a pid namespace, so `ray stop` and the end of this script touch only our
# processes. Arguments: WORK MODEL IMAGES SMALL SHARD_PATTERN. Results go to WORK/*.{json,rc,log}.
set -u
W=$1; MODEL=$2; IMAGES=$3; SMALL=$4; SHARDS=$5
BIN=$(dirname "$PY")
T=$(mktemp -d /tmp/rayXXXXXX)
ip link set lo up
export RAY_ADDRESS=127.0.0.1:6380 HSPNET_RAY_ACTOR_CPUS=0.5 HSPNET_RAY_TASK_CPUS=0.5 RAY_USAGE_STATS_ENABLED=0
# Token authentication, the token shared through the environment (nothing written to ~/.ray).
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$BIN/ray" start --head --node-ip-address 127.0.0.1 --port 6380 --num-cpus 1 --temp-dir "$T" \
  --include-dashboard false --disable-usage-stats > "$W/head.log" 2>&1 || { echo "head failed" >> "$W/head.log"; exit 3; }
HEAD_RAYLETS=$(pgrep -x raylet | tr '\n' ' ')
"$BIN/ray" start --address 127.0.0.1:6380 --node-ip-address 127.0.0.1 --num-cpus 1 \
  --disable-usage-stats > "$W/node2.log" 2>&1 || { echo "node2 failed" >> "$W/node2.log"; exit 4; }
NODE2=""
for p in $(pgrep -x raylet); do case " $HEAD_RAYLETS " in *" $p "*) ;; *) NODE2=$p;; esac; done
echo "$NODE2" > "$W/node2.pid"
"$PY" -c "import ray; ray.init(); print(int(ray.cluster_resources()['CPU']), len([n for n in ray.nodes() if n['Alive']]), ray.nodes()[0]['NodeManagerAddress'])" > "$W/cluster.txt" 2>/dev/null

tag() {  # tag NAME SOURCE EXTRA...: one hspnet tag --engine ray run, its JSON summary and exit status
  local name=$1 src=$2; shift 2
  "$PY" -m hspnet_cli tag "$src" --checkpoint "$MODEL" --format parquet --engine ray --ray-address 127.0.0.1:6380 \
    --out "$W/$name" --batch-size 8 --device cpu --json "$@" > "$W/$name.json" 2> "$W/$name.log"
  echo $? > "$W/$name.rc"
}
parts() { ls "$W/$1" 2>/dev/null | grep -c '^part-'; }
wait_parts() {  # wait_parts NAME N PID: until N parts exist (or PID ends)
  for _ in $(seq 1 600); do [ "$(parts "$1")" -ge "$2" ] && return 0; kill -0 "$3" 2>/dev/null || return 1; sleep 0.2; done
}

tag folder "$SMALL" --block-size 8
tag shards "$SHARDS"

# Interrupted: kill -9 the client after 3 parts, then rerun the same command.
"$PY" -m hspnet_cli tag "$IMAGES" --checkpoint "$MODEL" --format parquet --engine ray --ray-address 127.0.0.1:6380 \
  --out "$W/resumed" --batch-size 8 --block-size 6 --device cpu --json > /dev/null 2> "$W/interrupted.log" &
CLIENT=$!
wait_parts resumed 3 $CLIENT; kill -9 $CLIENT; wait $CLIENT 2>/dev/null
parts resumed > "$W/resumed.before"
tag resumed "$IMAGES" --block-size 6

# A node dies: kill -9 the second node's raylet once 3 parts are written; the job must finish.
tag killed "$IMAGES" --block-size 6 &
JOB=$!
wait_parts killed 3 $JOB && kill -9 "$NODE2" && echo killed > "$W/killed.done"
wait $JOB
"$BIN/ray" stop --force > /dev/null 2>&1
exit 0
