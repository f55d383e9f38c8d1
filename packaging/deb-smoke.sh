#!/usr/bin/env bash
# Smoke test of the Debian package (docs/packaging.md), run by .ci/run as root on Debian 12:
# builds the .deb with cargo-deb, installs it with dpkg, checks the user, files and
# permissions, starts the service (systemctl when systemd is PID 1; otherwise the installed
# unit's ExecStart, as its User and Group, in its WorkingDirectory), waits for /healthz, starts
# one verification with the API key the first start printed, reloads with SIGHUP, stops with
# SIGTERM (exit 0 within 20 s), reinstalls over the data, removes, and purges.
#
# VERIFYD_LISTEN=127.0.0.1:PORT serves on another port when 8080 is busy (the server reads
# VERIFYD_LISTEN over the file's `listen`). VERIFYD_SMOKE_KEEP=1 leaves the package installed
# when the test fails, to look at it. The package must not be installed beforehand: this
# script installs and purges it, data included.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly PKG=verifyd
readonly CONF=/etc/verifyd/verifyd.toml
readonly STATE=/var/lib/verifyd
readonly NUMBER=447700123456
listen=${VERIFYD_LISTEN:-127.0.0.1:8080}
override_listen=${VERIFYD_LISTEN:+yes}

started=$SECONDS
step() { printf '\n== [%3ss] %s\n' "$((SECONDS - started))" "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() {
  printf 'deb-smoke: FAILED: %s\n' "$*" >&2
  exit 1
}

# What this run started or changed, for cleanup on every exit path.
mode=
pid=
installed=no
dropin=
tmp=$(mktemp -d)
since=$(date '+%Y-%m-%d %H:%M:%S')

server_stdout() {
  if [ "$mode" = systemd ]; then
    journalctl -u "$PKG" --since "$since" -o cat --no-pager _TRANSPORT=stdout 2>/dev/null | grep -F '"api_secret"' || true
  else
    cat "$tmp/stdout" 2>/dev/null || true
  fi
}

server_log() {
  if [ "$mode" = systemd ]; then
    journalctl -u "$PKG" --since "$since" -o cat --no-pager 2>/dev/null || true
  else
    cat "$tmp/stderr" 2>/dev/null || true
  fi
}

# Whether the server's log has the text $1. (Not `server_log | grep -q`: grep stops at the
# first match, and under pipefail the writer's SIGPIPE would fail the pipeline.)
log_has() {
  local log
  log=$(server_log)
  grep -qF -- "$1" <<<"$log"
}

# Whether process $1 runs: it exists and is not a zombie (our child stays one, and kill -0
# succeeds on it, until it is waited for).
running() {
  local state
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
  state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Whether the server is running: the unit active, or our child alive.
server_alive() {
  if [ "$mode" = systemd ]; then
    systemctl is-active --quiet "$PKG"
  else
    running "$pid"
  fi
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  if [ "$mode" = direct ] && running "$pid"; then
    echo "deb-smoke: stopping verifyd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 200); do
      running "$pid" || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
  fi
  if [ "$mode" = direct ] && [ -n "$pid" ]; then
    wait "$pid" 2>/dev/null
  fi
  if [ "$mode" = systemd ] && [ "$installed" = yes ]; then
    systemctl stop "$PKG" 2>/dev/null
  fi
  if [ "$rc" -ne 0 ] && [ -n "$(server_log)" ]; then
    echo "deb-smoke: the server's log (last 100 lines):" >&2
    server_log | tail -n 100 >&2
  fi
  if [ -n "$dropin" ]; then
    rm -rf "$dropin"
    systemctl daemon-reload 2>/dev/null
  fi
  if [ "$installed" = yes ]; then
    if [ "$rc" -ne 0 ] && [ -n "${VERIFYD_SMOKE_KEEP:-}" ]; then
      echo "deb-smoke: VERIFYD_SMOKE_KEEP is set: $PKG stays installed (dpkg --purge $PKG)" >&2
    else
      dpkg --purge "$PKG" >/dev/null 2>&1 || echo "deb-smoke: dpkg --purge $PKG failed" >&2
    fi
  fi
  rm -rf "$tmp"
  if [ "$rc" -eq 0 ]; then
    printf '\ndeb-smoke: PASSED in %ss\n' "$((SECONDS - started))"
  else
    printf '\ndeb-smoke: FAILED (exit %s) after %ss\n' "$rc" "$((SECONDS - started))" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# `owner:group mode` of a path, as expected.
expect_stat() {
  local path=$1 want=$2 got
  got=$(stat -c '%U:%G %a' "$path" 2>/dev/null) || fail "$path does not exist"
  [ "$got" = "$want" ] || fail "$path is $got, expected $want"
  ok "$path $got"
}

# Runs a command as the unit's user and group, as systemd would (no new privileges).
as_service_user() {
  setpriv --reuid="$svc_user" --regid="$svc_group" --init-groups --no-new-privs -- "$@"
}

step "preconditions"
[ "$(id -u)" = 0 ] || fail "run as root: this installs and purges the $PKG package"
command -v dpkg >/dev/null || fail "dpkg not found: this test needs Debian or a derivative"
if status=$(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null) && [ "${status##* }" != not-installed ]; then
  fail "$PKG is already on this machine ($status); this test installs and purges it, data included: run it where $PKG is not installed, or dpkg --purge $PKG first"
fi
[ ! -e "$STATE" ] || fail "$STATE exists (data of an earlier installation?); move it away first"
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
# cargo-deb: dpkg-shlibdeps resolves $auto (libc6); objcopy splits off the dbgsym package.
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
command -v objcopy >/dev/null || missing+=(binutils)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
cargo deb --version >/dev/null 2>&1 || fail "cargo-deb is missing: cargo install cargo-deb --locked"

host=${listen%:*}
host=${host#[}
host=${host%]}
port=${listen##*:}
base="http://$listen"
# The server binds with SO_REUSEADDR, as this does: only a listener in the way fails it.
if ! why=$(python3 - "$host" "$port" 2>&1 <<'EOF'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((host, port))
except OSError as e:
    sys.exit(e.strerror)
EOF
); then
  fail "cannot listen on $listen: $why. Another program holds the port (ss -ltnp 'sport = :$port' names it); stop it, or run with VERIFYD_LISTEN=127.0.0.1:<free port>"
fi
ok "$listen is free"

pid1=$(ps -p 1 -o comm= 2>/dev/null || cat /proc/1/comm)
pid1=${pid1//[[:space:]]/}
if [ "$pid1" = systemd ] && [ -d /run/systemd/system ]; then
  mode=systemd
else
  mode=direct
fi
ok "PID 1 is $pid1: the service is started $([ "$mode" = systemd ] && echo 'by systemctl' || echo "from the unit's ExecStart, without systemd")"

step "building the package: cargo deb -p $PKG -- --locked"
# It prints the path of each package it made: the .deb, and the -dbgsym .ddeb (Cargo.toml).
deb=$(cargo deb -p "$PKG" -- --locked | grep '\.deb$' | tail -n 1)
[ -f "$deb" ] || fail "cargo deb did not print the path of a package (got: $deb)"
ok "$deb ($(du -h "$deb" | cut -f1))"
dpkg-deb -f "$deb" Package Version Architecture Depends Recommends Section | sed 's/^/   /'
dpkg-deb -f "$deb" Depends | grep -qw adduser || fail "Depends lacks adduser"
dpkg-deb -f "$deb" Depends | grep -qw libc6 || fail "Depends lacks libc6: cargo-deb could not resolve \$auto"
dpkg-deb -f "$deb" Recommends | grep -qw espeak-ng || fail "Recommends lacks espeak-ng"

if [ "$mode" = systemd ] && [ -n "$override_listen" ]; then
  # Before the install, whose postinst starts the service.
  dropin=/run/systemd/system/$PKG.service.d
  mkdir -p "$dropin"
  printf '[Service]\nEnvironment=VERIFYD_LISTEN=%s\n' "$listen" >"$dropin/deb-smoke.conf"
  systemctl daemon-reload
fi

step "installing: dpkg -i"
installed=yes
if ! dpkg -i "$deb"; then
  echo "dpkg -i left dependencies unmet: apt-get install -f"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -f -y -qq
fi
[ "$(dpkg-query -W -f='${Status}' "$PKG")" = "install ok installed" ] || fail "$PKG is not installed after dpkg -i"
ok "$(dpkg-query -W -f='${Package} ${Version}' "$PKG") installed"

step "checking the user, the files and their permissions"
entry=$(getent passwd "$PKG") || fail "no user $PKG"
IFS=: read -r _ _ uid gid _ home shell <<<"$entry"
[ "$uid" -lt 1000 ] || fail "user $PKG has uid $uid, not a system uid"
[ "$home" = "$STATE" ] || fail "user $PKG has home $home, expected $STATE"
[ "$shell" = /usr/sbin/nologin ] || fail "user $PKG has shell $shell, expected /usr/sbin/nologin"
[ "$(getent group "$gid" | cut -d: -f1)" = "$PKG" ] || fail "user $PKG's primary group is not $PKG"
ok "user $entry"
expect_stat /usr/bin/verifyd "root:root 755"
expect_stat "$CONF" "root:$PKG 640"
expect_stat "$STATE" "$PKG:$PKG 750"
dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -q "^ $CONF " || fail "$CONF is not a conffile"
ok "$CONF is a conffile"
dpkg-statoverride --list "$CONF" | grep -qE "^root $PKG 0?640 $CONF\$" || fail "no statoverride root $PKG 0640 for $CONF"
ok "statoverride: $(dpkg-statoverride --list "$CONF")"
unit=$(dpkg -L "$PKG" | grep -E "/systemd/system/$PKG\.service\$") || fail "the package installs no $PKG.service"
expect_stat "$unit" "root:root 644"
for doc in README.md copyright docs/configuration.md docs/operations.md docs/packaging.md examples/verifyd.toml; do
  [ -f "/usr/share/doc/$PKG/$doc" ] || fail "/usr/share/doc/$PKG/$doc is missing"
done
ok "/usr/share/doc/$PKG: README.md, copyright, docs/*.md, examples/verifyd.toml"
[ -L "/etc/systemd/system/multi-user.target.wants/$PKG.service" ] || fail "the unit is not enabled"
ok "enabled: /etc/systemd/system/multi-user.target.wants/$PKG.service"

unit_value() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
exec_start=$(unit_value ExecStart)
svc_user=$(unit_value User)
svc_group=$(unit_value Group)
workdir=$(unit_value WorkingDirectory)
umask_value=$(unit_value UMask)
if [ "$svc_user" != "$PKG" ] || [ "$svc_group" != "$PKG" ]; then
  fail "the unit runs as $svc_user:$svc_group, expected $PKG:$PKG"
fi
[ "$workdir" = "$STATE" ] || fail "the unit's WorkingDirectory is $workdir, expected $STATE"
ok "unit: ExecStart=$exec_start User=$svc_user Group=$svc_group WorkingDirectory=$workdir"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
  ok "systemd-analyze verify $unit"
fi

if runuser -u nobody -- cat "$CONF" >/dev/null 2>&1; then
  fail "user nobody can read $CONF"
fi
ok "other users cannot read $CONF"
as_service_user /usr/bin/verifyd config check --config "$CONF" >"$tmp/effective.toml" ||
  fail "verifyd config check --config $CONF failed as user $svc_user"
ok "verifyd config check --config $CONF as $svc_user: valid"

step "starting the service"
if [ "$mode" = systemd ]; then
  systemctl start "$PKG"
  pid=$(systemctl show -p MainPID --value "$PKG")
  ok "systemctl start $PKG: MainPID $pid"
else
  case $exec_start in
    [-@+!:]*) fail "ExecStart=$exec_start has a prefix this script cannot run without systemd" ;;
  esac
  # systemd's clean environment; VERIFYD_LISTEN only when the caller set it.
  env_vars=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "HOME=$STATE")
  [ -z "$override_listen" ] || env_vars+=("VERIFYD_LISTEN=$listen")
  # setpriv execs in place (runuser would fork and turn SIGTERM into a SIGKILL 2 s later),
  # so $! is verifyd's own pid once sh has exec'd it.
  # shellcheck disable=SC2016 # $1 and $2 are sh's own arguments
  env -i "${env_vars[@]}" \
    setpriv --reuid="$svc_user" --regid="$svc_group" --init-groups --no-new-privs -- \
    /bin/sh -c 'umask "$1" && cd "$2" && exec '"$exec_start" sh "${umask_value:-0022}" "$workdir" \
    >"$tmp/stdout" 2>"$tmp/stderr" </dev/null &
  pid=$!
  ok "started as $svc_user in $workdir: pid $pid"
fi

deadline=$((SECONDS + 30))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/healthz")" = 200 ]; do
  server_alive || fail "verifyd exited before /healthz answered"
  [ "$SECONDS" -lt "$deadline" ] || fail "GET $base/healthz did not answer 200 within 30 s"
  sleep 0.2
done
ok "GET $base/healthz: 200 after $((SECONDS - deadline + 30)) s"
user_of_pid=$(stat -c %U "/proc/$pid")
[ "$user_of_pid" = "$svc_user" ] || fail "verifyd runs as $user_of_pid, expected $svc_user"
ok "pid $pid runs as $user_of_pid"
expect_stat "$STATE/verifyd.db" "$PKG:$PKG 600"
expect_stat "$STATE/verifyd.key" "$PKG:$PKG 600"

step "starting a verification with the first API key"
stdout=$(server_stdout)
key_line=$(grep -m 1 -F '"api_secret"' <<<"$stdout") || fail "the server printed no API key on stdout"
read -r api_key api_secret < <(python3 -c '
import json, sys
key = json.loads(sys.argv[1])
print(key["api_key"], key["api_secret"])' "$key_line")
ok "API key $api_key (secret not shown)"
answer=$(curl -sS --max-time 10 -X POST "$base/verify/json" \
  --data-urlencode "api_key=$api_key" --data-urlencode "api_secret=$api_secret" \
  -d number="$NUMBER" -d brand=Acme -d workflow_id=6)
echo "   POST /verify/json: $answer"
request_id=$(python3 -c '
import json, sys
answer = json.loads(sys.argv[1])
if answer.get("status") != "0" or not answer.get("request_id"):
    sys.exit("expected status 0 and a request_id")
print(answer["request_id"])' "$answer") || fail "POST /verify/json: $answer"
ok "status 0, request_id $request_id"
deadline=$((SECONDS + 10))
until curl -sS --max-time 2 "$base/inbox/messages?to=$NUMBER" | python3 -c '
import json, sys
sys.exit(0 if any(m["request_id"] == sys.argv[1] for m in json.load(sys.stdin)) else 1)' "$request_id"; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the SMS of $request_id did not reach the inbox within 10 s"
  sleep 0.2
done
ok "its SMS is in the inbox (GET /inbox/messages?to=$NUMBER)"

step "reloading the configuration (SIGHUP)"
if [ "$mode" = systemd ]; then
  systemctl reload "$PKG"
  ok "systemctl reload $PKG"
else
  kill -HUP "$pid"
  ok "kill -HUP $pid"
fi
deadline=$((SECONDS + 10))
until log_has 'configuration reloaded'; do
  ! log_has 'configuration not reloaded' || fail "the server refused its own configuration on SIGHUP"
  server_alive || fail "verifyd exited on SIGHUP"
  [ "$SECONDS" -lt "$deadline" ] || fail "no 'configuration reloaded' in the log within 10 s of SIGHUP"
  sleep 0.2
done
server_alive || fail "verifyd exited after SIGHUP"
[ "$mode" != systemd ] || [ "$(systemctl show -p MainPID --value "$PKG")" = "$pid" ] || fail "the main process changed on reload"
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/healthz")" = 200 ] || fail "/healthz is not 200 after SIGHUP"
ok "logged 'configuration reloaded'; pid $pid still serving (/healthz 200)"

step "stopping (SIGTERM)"
stop_started=$SECONDS
if [ "$mode" = systemd ]; then
  timeout 25 systemctl stop "$PKG" || fail "systemctl stop $PKG did not return within 25 s"
  took=$((SECONDS - stop_started))
  [ "$took" -le 20 ] || fail "verifyd took $took s to stop, more than 20 s"
  result=$(systemctl show -p Result --value "$PKG")
  status=$(systemctl show -p ExecMainStatus --value "$PKG")
  if [ "$result" != success ] || [ "$status" != 0 ]; then
    fail "verifyd stopped with Result=$result ExecMainStatus=$status"
  fi
  ok "systemctl stop $PKG: exit 0 in $took s"
else
  kill -TERM "$pid"
  for _ in $(seq 1 200); do
    running "$pid" || break
    sleep 0.1
  done
  if running "$pid"; then
    fail "verifyd still runs 20 s after SIGTERM"
  fi
  rc=0
  wait "$pid" || rc=$?
  took=$((SECONDS - stop_started))
  pid=
  [ "$rc" -eq 0 ] || fail "verifyd exited $rc on SIGTERM, expected 0"
  ok "exit 0 in $took s"
fi
pid=
log_has 'verifyd stopped' || fail "no 'verifyd stopped' in the log"
ok "logged 'verifyd stopped'"
if server_log | grep -E '(^| )ERROR ' >&2; then
  fail "the server logged errors (above)"
fi
ok "no ERROR in the server's log"

step "reinstalling over the data (dpkg -i, as an upgrade does)"
dpkg -i "$deb" >/dev/null
[ "$mode" != systemd ] || systemctl stop "$PKG"
expect_stat "$CONF" "root:$PKG 640"
expect_stat "$STATE" "$PKG:$PKG 750"
as_service_user /usr/bin/verifyd keys list --config "$CONF" >"$tmp/keys" || fail "verifyd keys list as $svc_user failed"
grep -qF "\"api_key\":\"$api_key\"" "$tmp/keys" || fail "the API key $api_key is gone after the reinstall"
ok "verifyd keys list as $svc_user still lists $api_key"

step "removing (dpkg -r): the data and the configuration stay"
dpkg -r "$PKG" >/dev/null
[ ! -e /usr/bin/verifyd ] || fail "/usr/bin/verifyd is still there after dpkg -r"
if [ ! -f "$STATE/verifyd.db" ] || [ ! -f "$STATE/verifyd.key" ]; then
  fail "dpkg -r deleted the data in $STATE"
fi
[ -f "$CONF" ] || fail "dpkg -r deleted $CONF"
ok "binary gone; $STATE/verifyd.db, $STATE/verifyd.key and $CONF kept"

step "purging (dpkg --purge): the data goes"
dpkg --purge "$PKG" >/dev/null
installed=no
[ ! -e "$STATE" ] || fail "$STATE is still there after the purge"
[ ! -e "$CONF" ] || fail "$CONF is still there after the purge"
[ ! -e "$unit" ] || fail "$unit is still there after the purge"
[ ! -e "/etc/systemd/system/multi-user.target.wants/$PKG.service" ] || fail "the unit is still enabled after the purge"
! dpkg-statoverride --list "$CONF" >/dev/null || fail "the statoverride of $CONF is still there after the purge"
ok "$STATE, $CONF, the unit, its enablement and the statoverride are gone"
getent passwd "$PKG" >/dev/null && ok "the system user $PKG stays (deluser --system $PKG removes it)"
