"""The per-node reconciler: store -> this node's desired datapath -> the kernel.

- `naming`: the host-side veth name of a pod, derived from its key (CNI and agent agree);
- `desired`: pure: a store snapshot -> this node's `NodeDatapathState`;
- `status`: the per-node `datapath` record (applied revision, pods not programmed, counters)
  and the wait behind "UpsertPod returns once the pod's node has programmed it";
- `reconciler`: watches the store and converges the kernel on every change;
- `service`: what `egress-agent --datapath kernel` runs, assembled.
"""
