#!/usr/bin/env bash
# Two-node DDP training of folio on one Linux machine: two network namespaces ("nodes") joined by
# a veth pair, one torchrun in each, gloo over the veth. A recipe to read: on two real machines
# run the two `torchrun` lines, one on each, with their own addresses (docs/multinode.md).
#
#   sudo env PYTHON=.venv/bin/python scripts/two_nodes.sh [PROJECT_DIR] [folio train arguments...]
#
# OMP_NUM_THREADS passes through: torchrun sets it to 1 only where it starts several processes per
# node, so set it to 1 here to get the weights of `torchrun --standalone --nproc_per_node=2`.
#
# Needs root (or CAP_NET_ADMIN) and iproute2's `ip`. Both nodes share PROJECT_DIR (default: .),
# as two machines share an NFS mount: rank 0 alone writes models/, reports/ and MLflow.
# Settings: PYTHON (default: python), FOLIO_NODES_TAG (names the namespaces; default: the pid),
# FOLIO_NET (default 10.77.0), FOLIO_RDZV_PORT (default 29500), FOLIO_JOIN_TIMEOUT (seconds the
# rendezvous waits for both nodes; default 60). Exits with node 0's status, else node 1's.
set -euo pipefail

project=${1:-.}
shift || true
python=${PYTHON:-python}
tag=${FOLIO_NODES_TAG:-$$}
net=${FOLIO_NET:-10.77.0}
port=${FOLIO_RDZV_PORT:-29500}
join_timeout=${FOLIO_JOIN_TIMEOUT:-60}
ns=("folio${tag}n0" "folio${tag}n1")
veth=("fv${tag}a" "fv${tag}b")   # interface names: at most 15 characters
addr=("${net}.1" "${net}.2")

command -v ip >/dev/null || { echo "error: iproute2's ip is not installed; install it (apt-get install iproute2)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "error: network namespaces need root; run with sudo" >&2; exit 2; }

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    ip netns del "${ns[0]}" 2>/dev/null || true
    ip netns del "${ns[1]}" 2>/dev/null || true   # deleting a namespace removes its end of the veth, and so the pair
}
trap cleanup EXIT

# 1. two "machines": namespaces with an address each, joined by a cable (the veth pair)
ip netns add "${ns[0]}"
ip netns add "${ns[1]}"
ip link add "${veth[0]}" type veth peer name "${veth[1]}"
for i in 0 1; do
    ip link set "${veth[$i]}" netns "${ns[$i]}"
    ip -n "${ns[$i]}" addr add "${addr[$i]}/24" dev "${veth[$i]}"
    ip -n "${ns[$i]}" link set lo up
    ip -n "${ns[$i]}" link set "${veth[$i]}" up
done

# 2. the same torchrun on each node; node 0 hosts the rendezvous store (is_host: the namespaces
# share one host name, so torchrun cannot tell by name which node is the host)
for i in 0 1; do
    ( cd "$project" && exec ip netns exec "${ns[$i]}" env GLOO_SOCKET_IFNAME="${veth[$i]}" \
        "$python" -m torch.distributed.run --nnodes=2 --nproc_per_node=1 \
        --rdzv_backend=c10d --rdzv_endpoint="${addr[0]}:${port}" --rdzv_id="folio-${tag}" \
        --local-addr="${addr[$i]}" --rdzv-conf="is_host=$((1 - i)),join_timeout=${join_timeout}" \
        -m pipeline.cli train "$@" ) > >(sed -u "s/^/[node $i] /") 2>&1 &
    pids+=($!)
done

status=0 status1=0
wait "${pids[0]}" || status=$?
wait "${pids[1]}" || status1=$?
[ "$status" != 0 ] || status=$status1
pids=()
exit "$status"
