"""`egress-cni`: a chained CNI plugin (CNI spec 1.0.0) that tells the node's egress-agent about each pod.

It runs last in a conflist, after the main plugin (ptp, bridge, Calico, ...):

- `spec`: the CNI protocol's pieces: versions served, error codes, the error object;
- `request`: one invocation read from the environment and stdin (netconf, CNI_ARGS, prevResult);
- `agent`: the plugin's three calls to the agent (JSON over HTTP on the agent's pod socket);
- `main`: ADD / DEL / CHECK / VERSION, the failure policy, and the console script;
- `install`: the DaemonSet's init container: the plugin into the CNI bin dir, `egress` last in the conflist.

A plugin is started per pod, so this package imports only Python's standard library (not grpc,
protobuf or pydantic, not the agent): validation happens in the agent.
"""
