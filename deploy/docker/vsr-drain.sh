#!/bin/sh
# vsr-drain: stop a worker gracefully and wait until it has exited (Kubernetes preStop hook, or by hand:
# `kubectl exec POD -- vsr-drain`).
#
# SIGTERM makes `vsr worker` stop taking jobs; its running job goes back to the queue at the next chunk
# (VSR_SHUTDOWN=requeue, the default) or finishes first (VSR_SHUTDOWN=finish), then it exits 0. This
# script waits for that exit, so the kubelet's own SIGTERM, sent when the hook returns, finds no process:
# a second SIGTERM would make the worker stop at once. The pod's terminationGracePeriodSeconds bounds it.
set -eu

pid="${VSR_DRAIN_PID:-1}"  # the worker is the container's PID 1 (the entrypoints exec it)
if kill -TERM "$pid" 2>/dev/null; then
    echo "vsr-drain: asked worker $pid to stop (VSR_SHUTDOWN=${VSR_SHUTDOWN:-requeue})" >&2
fi
while kill -0 "$pid" 2>/dev/null; do
    sleep 1
done
echo "vsr-drain: worker $pid exited" >&2
