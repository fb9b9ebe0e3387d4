#!/usr/bin/env bash
# imgrec train on two machines with 4 GPUs each, started by hand with torchrun.
#
# Run this same script on both machines (host0 and host1 here), from a folder that both
# mount at the same path: every process reads photos/, rank 0 writes runs/big, and a
# resumed run reads rank 0's checkpoint from it.
#
#   host0$ examples/torchrun.sh
#   host1$ examples/torchrun.sh
#
# torchrun's c10d rendezvous: the agent on each machine meets the other at
# RDZV_HOST:29400 (host0 by default; that machine serves it, so it must be reachable from
# the other on that port), they agree on node ranks, and each starts 4 processes. imgrec
# reads the job's shape from torchrun's variables; --devices and --num-nodes must say the
# same as --nproc-per-node and --nnodes (imgrec stops with one sentence when they do not).
#
# Interrupted (Ctrl-C, a machine lost)? Finished epochs are kept in runs/big: run the same
# torchrun line on both machines with `imgrec train --resume runs/big --devices 4
# --num-nodes 2` in place of `imgrec train photos/ ... --out runs/big`.
#
# Without torchrun on the command line: on each machine, `MASTER_ADDR=host0 NODE_RANK=0
# imgrec train photos/ --devices 4 --num-nodes 2 --out runs/big` (NODE_RANK=1 on host1)
# starts torchrun's agent itself, with its static rendezvous at host0:29500 (MASTER_PORT).

set -euo pipefail

# The host that serves the rendezvous, and a name for this job that both machines share
# (a second job at the same time needs another).
rdzv_host=${RDZV_HOST:-host0}
rdzv_id=${RDZV_ID:-imgrec-big}

torchrun --nnodes 2 --nproc-per-node 4 \
    --rdzv-backend c10d --rdzv-endpoint "$rdzv_host:29400" --rdzv-id "$rdzv_id" \
    -m imgrec train photos/ --devices 4 --num-nodes 2 --out runs/big
