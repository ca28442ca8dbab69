#!/bin/sh
# Start a lab node's dockerd: the Unix socket inside, and TCP 2375 on the lab's private bridge
# so the host's tests reach every node's engine by the node container's IP (no TLS: the lab is
# throwaway and nothing outside the host can route to it).
set -eu
# Not privileged (the host's bounding set lacks CAP_SYS_RESOURCE, which --privileged asks for):
# the node gets every other capability, and makes writable what an engine writes to.
# A fresh procfs: the engine writes /proc/sys, which a container's /proc holds read-only.
mount -t proc proc /proc
mount -o remount,rw /sys
for dir in /sys/fs/cgroup/*; do
    mount -o remount,rw "$dir" 2>/dev/null || mount -o remount,bind,rw "$dir"
done
# The engine's mounts must propagate into the containers it starts (what Docker's dind does).
mount --make-rshared /
# A killed node leaves its run state behind; a restarted one must not take it for a live engine.
rm -rf /var/run/docker /var/run/docker.pid /var/run/docker.sock
exec dockerd \
    --host=unix:///var/run/docker.sock \
    --host=tcp://0.0.0.0:2375 \
    --tls=false \
    --storage-driver=overlay2 \
    "$@"
