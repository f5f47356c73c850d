#!/usr/bin/env bash
# `npm run test:container`: builds the image from a clean checkout of HEAD with a real Docker
# engine and runs it the way an orchestrator would (read-only root filesystem, a tmpfs for /tmp,
# a volume for /data, its non-root user), once on the embedded database and once against a
# PostgreSQL server. Each pass checks /readyz, registers a workspace, runs a reference agent
# from the same image, makes proxied calls through the gate, and stops the gate with SIGTERM
# while a call is in flight: the call must finish, the gate must log its drain and exit 0.
# Not part of `npm test` or CI (it needs a Docker engine and a few minutes).
#
# Every container uses the host's network and listens on 127.0.0.1 only, so all traffic stays
# on loopback. Environment:
#   TEST_DATABASE_URL              the PostgreSQL server of the second pass (a throwaway database
#                                  is created there and dropped afterwards); default
#                                  postgres://postgres@127.0.0.1:5432/postgres
#   AGENTGATE_BASE_IMAGES_SCRIPT   a script that builds local stand-ins for the Dockerfile's base
#                                  images, run when they are missing (for engines that reach no
#                                  registry); without it, missing base images stop the run
#   AGENTGATE_TEST_IMAGE           the tag to build (default agentgate:test); kept afterwards
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

image=${AGENTGATE_TEST_IMAGE:-agentgate:test}
server_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
run_id="agentgate-test-$$"
grace_ms=10000
# docker stop's own grace, after which it sends SIGKILL: well above the service's drain bound, so
# that an exit code of 0 means the process stopped by itself.
stop_timeout_s=$((grace_ms / 1000 + 10))

work=$(mktemp -d)
containers=()
volumes=()
database=""
dockerd_pid=""
summary=()
table_row() { printf '%-9s %-7s %-7s %-5s %-10s %-7s %-25s %-5s %s\n' "$@"; }

step() { printf '\n==> %s\n' "$*"; }
fail() {
  printf 'FAILED: %s\n' "$*" >&2
  exit 1
}
now_ms() { date +%s%3N; }

cleanup() {
  local status=$?
  set +e
  if [ "$status" -ne 0 ]; then
    for c in "${containers[@]}"; do
      printf '\n--- last log lines of %s ---\n' "$c" >&2
      docker logs --tail 25 "$c" 2>&1 | sed 's/^/  /' >&2
    done
  fi
  # -v: also the anonymous volume the image's VOLUME gives a container started without one.
  for c in "${containers[@]}"; do docker rm -f -v "$c" >/dev/null 2>&1; done
  for v in "${volumes[@]}"; do docker volume rm -f "$v" >/dev/null 2>&1; done
  [ -z "$database" ] || psql -q "$server_url" -c "drop database if exists \"$database\" with (force)" >/dev/null 2>&1 ||
    printf 'could not drop the database %s\n' "$database" >&2
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" 2>/dev/null
    echo "stopped the Docker engine this run started"
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free port on loopback (the kernel picks it; released just before use).
free_port() {
  node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

# Prints one field of a JSON document: json '<document>' '<JS expression of d>'.
json() {
  node -e 'const d = JSON.parse(process.argv[1]); const v = new Function("d", "return " + process.argv[2])(d); console.log(typeof v === "string" ? v : JSON.stringify(v))' "$1" "$2"
}

# curl that prints the body and then the status on a line of its own.
call() {
  curl -sS -w '\n%{http_code}' "$@"
}

step "Docker engine"
command -v docker >/dev/null || fail "no docker command: install Debian's docker.io (or Docker Engine)"
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || fail "no Docker engine is running and dockerd is not installed (Debian: apt-get install docker.io)"
  [ "$(id -u)" -eq 0 ] || fail "no Docker engine is running: start it (sudo dockerd, or systemctl start docker) and run again"
  # Containers here only ever use the host's network: the engine gets no bridge, and leaves the
  # host's firewall rules and IP forwarding as they are.
  dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || { tail -5 "$work/dockerd.log" >&2; dockerd_pid=""; fail "dockerd exited"; }
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { tail -5 "$work/dockerd.log" >&2; fail "dockerd did not answer within 60 s"; }
  echo "started dockerd (pid $dockerd_pid); it is stopped at the end"
fi
docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'

step "base images"
# The images the Dockerfile builds FROM, less its own stages.
mapfile -t bases < <(awk 'toupper($1) == "FROM" { for (i = 2; i <= NF; i++) if ($i !~ /^--/) { print $i; break } }
  toupper($1) == "FROM" && toupper($(NF-1)) == "AS" { print "stage:" $NF }' Dockerfile |
  awk '/^stage:/ { stage[substr($0, 7)] = 1; next } !($0 in stage) && !seen[$0]++')
missing=()
for b in "${bases[@]}"; do docker image inspect "$b" >/dev/null 2>&1 || missing+=("$b"); done
if [ "${#missing[@]}" -gt 0 ] && [ -n "${AGENTGATE_BASE_IMAGES_SCRIPT:-}" ]; then
  echo "missing: ${missing[*]}; building stand-ins with AGENTGATE_BASE_IMAGES_SCRIPT"
  bash "$AGENTGATE_BASE_IMAGES_SCRIPT"
  missing=()
  for b in "${bases[@]}"; do docker image inspect "$b" >/dev/null 2>&1 || missing+=("$b"); done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  printf 'The Dockerfile builds on %s, which this engine does not have.\n' "${missing[*]}" >&2
  printf 'Provide them first, e.g.:\n' >&2
  for b in "${missing[@]}"; do printf '  docker pull %s\n' "$b" >&2; done
  printf 'or, where no registry is reachable, set AGENTGATE_BASE_IMAGES_SCRIPT to a script that builds local stand-ins.\n' >&2
  exit 1
fi
for b in "${bases[@]}"; do docker image inspect --format "$b {{.Id}}" "$b" | cut -c1-40; done

step "build $image from a clean checkout of HEAD ($(git rev-parse --short HEAD))"
[ -z "$(git status --porcelain --untracked-files=no)" ] || echo "note: uncommitted changes are not part of this build"
mkdir "$work/src"
git archive --format=tar HEAD | tar -x -C "$work/src"
previous=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
dangling() { docker images -q --no-trunc --filter dangling=true | sort; }
dangling >"$work/dangling-before"
started=$(now_ms)
# No layer cache: every step, npm ci included, runs again, as on a machine that never built it.
if ! docker build --no-cache --network host -t "$image" "$work/src" >"$work/build.log" 2>&1; then
  tail -30 "$work/build.log" >&2
  fail "docker build"
fi
# Untagged images this build left (the build stage, the image the tag named before): removed,
# unless a container still uses one.
for old in $(dangling | comm -13 "$work/dangling-before" -) $previous; do
  [ "$old" = "$(docker image inspect --format '{{.Id}}' "$image")" ] || docker image rm "$old" >/dev/null 2>&1 || true
done
build_s=$(( ($(now_ms) - started + 500) / 1000 ))
size=$(docker image inspect --format '{{.Size}}' "$image")
user=$(docker image inspect --format '{{.Config.User}}' "$image")
printf 'built in %s s; image size %s bytes (%s MB); user "%s"\n' "$build_s" "$size" "$((size / 1000000))" "$user"
case "$user" in "" | root | 0 | 0:*) fail "the image runs as root (Config.User is \"$user\")" ;; esac

step "compose file"
if command -v docker-compose >/dev/null; then compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then compose=(docker compose)
else fail "no docker-compose (Debian: apt-get install docker-compose)"; fi
(cd "$work/src" && "${compose[@]}" -f docker-compose.yml config -q) || fail "docker-compose.yml does not validate"
echo "docker-compose.yml: valid (${compose[*]} config -q)"

# One pass: the gate on the given database, a reference agent, calls, SIGTERM. The first pass
# runs under an init process (`docker run --init`, as the Dockerfile suggests); the second
# without one, as Kubernetes runs it, where the service is PID 1 and gets SIGTERM itself.
run_pass() {
  local pass=$1 init=$2 database_url=${3:-}
  local gate_port agent_port gate agent_c volume admin ws started ready_s uid body status build agent_token
  gate_port=$(free_port)
  agent_port=$(free_port)
  gate="$run_id-$pass"
  agent_c="$gate-agent"
  volume="$gate-data"
  admin="agadm_test_$(node -e 'console.log(require("node:crypto").randomBytes(18).toString("base64url"))')"
  local base="http://127.0.0.1:$gate_port"

  local db_label=${database_url:+PostgreSQL server} init_label=${init:+under --init}
  step "pass $pass: the gate on 127.0.0.1:$gate_port, read-only, ${db_label:-embedded PostgreSQL in the volume}, ${init_label:-no init process}"
  docker volume create "$volume" >/dev/null
  volumes+=("$volume")
  local env=(-e HOST=127.0.0.1 -e "PORT=$gate_port" -e "AGENTGATE_ADMIN_TOKEN=$admin" -e "AGENTGATE_SHUTDOWN_GRACE_MS=$grace_ms")
  [ -z "$database_url" ] || env+=(-e "DATABASE_URL=$database_url")
  containers+=("$gate")
  started=$(now_ms)
  docker run -d --name "$gate" --network host ${init:+"$init"} --read-only --tmpfs /tmp -v "$volume:/data" \
    "${env[@]}" "$image" >/dev/null
  for _ in $(seq 240); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] && break
    [ "$(docker inspect -f '{{.State.Running}}' "$gate")" = true ] || fail "the gate container exited"
    sleep 0.5
  done
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] || fail "/readyz did not answer 200 within 120 s"
  ready_s=$(awk -v ms=$(($(now_ms) - started)) 'BEGIN { printf "%.1f", ms / 1000 }')
  uid=$(docker exec "$gate" id -u)
  [ "$uid" != 0 ] || fail "the gate runs as root"
  # The image's own HEALTHCHECK command, run now rather than after its first interval.
  local health=()
  mapfile -d '' -t health < <(docker image inspect --format '{{json .Config.Healthcheck.Test}}' "$image" |
    node -e 'const t = JSON.parse(require("node:fs").readFileSync(0, "utf8")); if (t[0] !== "CMD") process.exit(1); process.stdout.write(t.slice(1).join("\0") + "\0")')
  docker exec "$gate" "${health[@]}" || fail "the image's HEALTHCHECK command failed"
  echo "/readyz 200 after ${ready_s} s; the HEALTHCHECK command passes; the gate runs as uid $uid"

  ws=$(node -e 'console.log(crypto.randomUUID())')
  body=$(call -X PUT "$base/workspaces/$ws" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d "{\"ownerId\":\"$ws\",\"name\":\"container-test\"}")
  status=${body##*$'\n'}
  [ "$status" = 201 ] || fail "PUT /workspaces/$ws answered $status: ${body%$'\n'*}"
  build=$(call -X POST "$base/workspaces/$ws/builds" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d "{\"transition\":\"start\",\"agents\":[{\"name\":\"main\",\"address\":\"http://127.0.0.1:$agent_port\"}]}")
  status=${build##*$'\n'}
  [ "$status" = 201 ] || fail "POST /workspaces/$ws/builds answered $status: ${build%$'\n'*}"
  agent_token=$(json "${build%$'\n'*}" 'd.agents[0].token')
  echo "registered workspace $ws with one agent at 127.0.0.1:$agent_port"

  containers+=("$agent_c")
  docker run -d --name "$agent_c" --network host --init --read-only --tmpfs /tmp -e "AGENTGATE_AGENT_TOKEN=$agent_token" \
    "$image" agent --gate "$base" --listen "127.0.0.1:$agent_port" --root /tmp/ws --heartbeat-ms 1000 >/dev/null
  local agent_status=""
  started=$(now_ms)
  for _ in $(seq 60); do
    agent_status=$(json "$(curl -sS "$base/workspaces/$ws/agent" -H "authorization: Bearer $admin")" 'd.agent?.status ?? d.code')
    [ "$agent_status" = connected ] && break
    sleep 0.25
  done
  [ "$agent_status" = connected ] || fail "the agent is $agent_status, not connected, after 15 s"
  local agent_ms=$(($(now_ms) - started))
  echo "agent connected (first heartbeat) after $agent_ms ms"

  body=$(call -X POST "$base/workspaces/$ws/conn/exec" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '{"command":"id","args":["-u"]}')
  status=${body##*$'\n'}
  [ "$status" = 200 ] || fail "POST /conn/exec answered $status: ${body%$'\n'*}"
  local agent_uid
  agent_uid=$(json "${body%$'\n'*}" 'd.stdout.trim()')
  [ "$agent_uid" != 0 ] || fail "the agent runs commands as root"
  status=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$base/workspaces/$ws/conn/files?path=hello.txt" \
    -H "authorization: Bearer $admin" --data-binary "hello from $pass")
  [ "$status" = 200 ] || fail "PUT /conn/files answered $status"
  body=$(curl -sS "$base/workspaces/$ws/conn/files?path=hello.txt" -H "authorization: Bearer $admin")
  [ "$body" = "hello from $pass" ] || fail "GET /conn/files gave back \"$body\""
  echo "proxied calls: POST /exec (id -u: $agent_uid), PUT and GET /files on the agent's tmpfs"

  # SIGTERM while a call is in flight: the gate must finish it, then exit 0 by itself.
  call -X POST "$base/workspaces/$ws/conn/exec" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '{"command":"sleep","args":["1.5"]}' >"$work/$pass-inflight" 2>&1 &
  local inflight=$!
  sleep 0.5
  started=$(now_ms)
  docker stop -t "$stop_timeout_s" "$gate" >/dev/null
  local stop_ms=$(($(now_ms) - started)) exit_code
  wait "$inflight" || true
  exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$gate")
  status=$(tail -n 1 "$work/$pass-inflight")
  [ "$status" = 200 ] || fail "the call in flight at SIGTERM answered \"$(cat "$work/$pass-inflight")\""
  docker logs "$gate" 2>&1 | grep -q '"msg":"draining"' || fail "the gate did not log its drain"
  docker logs "$gate" 2>&1 | grep -q '"msg":"stopped"' || fail "the gate did not log that it stopped"
  [ "$exit_code" = 0 ] || fail "the gate exited with $exit_code after SIGTERM"
  local problems
  problems=$(docker logs "$gate" 2>&1 | grep -cE '"level":(40|50|60)' || true)
  echo "SIGTERM: the call in flight finished (200), drained and exited $exit_code in $stop_ms ms; $problems warning/error lines"
  [ "$problems" = 0 ] || docker logs "$gate" 2>&1 | grep -E '"level":(40|50|60)' | sed 's/^/  /'

  docker stop -t 10 "$agent_c" >/dev/null
  local agent_exit
  agent_exit=$(docker inspect -f '{{.State.ExitCode}}' "$agent_c")
  echo "agent stopped, exit $agent_exit"

  summary+=("$(table_row "$pass" "${init:-none}" "${ready_s} s" "$uid" "${agent_ms} ms" "200 x3" "200, ${stop_ms} ms" "$exit_code" "$problems")")
}

run_pass embedded --init

step "PostgreSQL server for the second pass"
command -v psql >/dev/null || fail "no psql (Debian: apt-get install postgresql-client)"
psql -q "$server_url" -c 'select 1' >/dev/null || fail "cannot reach $server_url (set TEST_DATABASE_URL)"
database="agentgate_container_$$"
psql -q "$server_url" -c "create database \"$database\"" >/dev/null
database_url=$(node -e 'const u = new URL(process.argv[1]); u.pathname = "/" + process.argv[2]; console.log(u.toString())' "$server_url" "$database")
echo "created the throwaway database $database (dropped at the end)"
run_pass server "" "$database_url"

step "summary"
table_row pass init ready uid heartbeat "calls" "SIGTERM: in flight, stop" exit warnings
printf '%s\n' "${summary[@]}"
printf 'image %s: %s bytes (%s MB), built in %s s from %s\n' "$image" "$size" "$((size / 1000000))" "$build_s" "$(git rev-parse --short HEAD)"
