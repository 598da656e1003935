#!/bin/sh
# The guest's only command (vng --exec): prepare what the labs and probes need, then hand
# over to the job agent until the host asks it to stop. When it exits the guest powers off.
# Usage: guest_init.sh SHARE PYTHON AGENT
set -u
share=$1
python=$2
agent=$3

progress() { echo "$*" >> "$share/progress"; }

progress "kernel $(uname -r) up, preparing"
# dockerd's overlay2 refuses the guest's overlayfs /var as backing store: give it tmpfs.
for dir in /var/lib/docker /var/lib/containerd; do
    mkdir -p "$dir" && mount -t tmpfs tmpfs "$dir" || progress "warning: tmpfs on $dir failed"
done
# /var is an overlay on the host's own: a lab the host has up right now would look like
# leftovers to the guest's labs, which want their state directories absent. Removing them
# here only whites them out in the guest's upper layer; the host's files are untouched.
for dir in /run/swarmtrace-lab /run/swarmtrace-swarm /var/lib/swarmtrace-swarm; do
    [ ! -e "$dir" ] || rm -rf "$dir" 2>/dev/null || progress "warning: could not hide $dir"
done
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || progress "warning: bpffs mount failed"
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing \
    || progress "warning: tracefs mount failed"
mountpoint -q /sys/kernel/debug || mount -t debugfs nodev /sys/kernel/debug \
    || progress "warning: debugfs mount failed"

progress "loading ip_vs ip_vs_rr nf_conntrack"
for module in ip_vs ip_vs_rr nf_conntrack; do
    modprobe "$module" || progress "warning: modprobe $module failed"
done

progress "starting job agent"
# -I -S: stdlib only, nothing from the host's site packages or environment; starts faster.
exec "$python" -I -S "$agent" "$share"
