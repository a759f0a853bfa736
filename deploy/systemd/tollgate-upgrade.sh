#!/usr/bin/env bash
# Zero-downtime upgrade of the Tollgate on this host (tollgate@.service):
# the running instance (blue or green) hands its listening sockets to a new
# process of the other instance, then drains its streams and stops.
#
#   install -m 0755 NEW-BINARY /usr/local/bin/tollgate   # a new inode: the
#                                    # running process keeps its own binary
#   deploy/systemd/tollgate-upgrade.sh
#
# 1. writes TOLLGATE_SERVE_FLAGS=--upgrade for the new instance and starts
#    it: its ExecStartPre (`tollgate check`) refuses a configuration the
#    new binary does not accept, and nothing changes;
# 2. waits until the new process listens on the upgrade socket (it waits
#    5 s there for the old one);
# 3. sends SIGQUIT to the old instance: it hands the sockets over, both
#    accept for 5 s, then the old one drains (at most
#    server.grace_period_seconds) and its unit stops by itself;
# 4. checks the new instance still runs, and makes it the one started at
#    boot.
# Run as root. Environment (for tests): SYSTEMCTL, TOLLGATE_RUN_DIR,
# TOLLGATE_UPGRADE_SOCK, TOLLGATE_UPGRADE_SETTLE (seconds to watch the new
# process after the handover, default 8).
set -euo pipefail

systemctl=${SYSTEMCTL:-systemctl}
run_dir=${TOLLGATE_RUN_DIR:-/run/tollgate}
sock=${TOLLGATE_UPGRADE_SOCK:-$run_dir/upgrade.sock}
settle=${TOLLGATE_UPGRADE_SETTLE:-8}

die() {
  echo "tollgate-upgrade: $*" >&2
  exit 1
}

active=()
for instance in blue green; do
  if $systemctl is-active --quiet "tollgate@$instance.service"; then
    active+=("$instance")
  fi
done
case "${active[*]:-}" in
  blue) old=blue new=green ;;
  green) old=green new=blue ;;
  "") die "no tollgate@ instance is running (first start: systemctl enable --now tollgate@blue)" ;;
  *) die "blue and green both run: an upgrade is still draining; wait until one has stopped" ;;
esac
echo "tollgate-upgrade: tollgate@$old -> tollgate@$new"

flags="$run_dir/$new.flags"
cleanup() { rm -f "$flags"; }
trap cleanup EXIT

# 1. The new instance, told to take the sockets over.
rm -f "$sock"
printf 'TOLLGATE_SERVE_FLAGS=--upgrade\n' >"$flags"
$systemctl start "tollgate@$new.service" ||
  die "tollgate@$new did not start (journalctl -u tollgate@$new); tollgate@$old still serves"

# 2. Its upgrade socket.
for _ in $(seq 40); do
  [ -S "$sock" ] && break
  sleep 0.1
done
if [ ! -S "$sock" ]; then
  $systemctl stop "tollgate@$new.service" || true
  die "tollgate@$new never listened on $sock; stopped it, tollgate@$old still serves"
fi

# 3. The handover: from now on the old instance only drains.
$systemctl kill --kill-who=main --signal=SIGQUIT "tollgate@$old.service"
rm -f "$flags" # a later restart of the new instance is a plain start

# 4. The new process must outlive the handover.
sleep "$settle"
$systemctl is-active --quiet "tollgate@$new.service" ||
  die "tollgate@$new stopped after the handover (journalctl -u tollgate@$new) and tollgate@$old only drains: put the previous binary back and systemctl start tollgate@$new"
$systemctl enable --quiet "tollgate@$new.service"
$systemctl disable --quiet "tollgate@$old.service"
echo "tollgate-upgrade: tollgate@$new serves; tollgate@$old drains its streams and stops by itself"
