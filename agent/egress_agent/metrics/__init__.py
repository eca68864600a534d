"""Prometheus metrics of one agent (`egress-agent --metrics-listen HOST:PORT`).

Each module has one job; `registry.AgentMetrics` assembles them into one
`CollectorRegistry` per agent (never the global default registry, so several
agents in one process do not collide):

- `api`: a gRPC server interceptor counting requests by method and status code, with a latency histogram;
- `holders`: floating IP -> holder, read from the store's assignment records at scrape time;
- `datapath`: this node's eBPF/SNAT packet counters and conntrack SNAT usage at scrape time, and the
  apply-duration histogram;
- `cluster`: floating-IP moves (counted by the leader that made them), leader changes, leadership,
  the failure detector's verdicts and detection times;
- `store`: store health at scrape time and commit latency;
- `server`: the HTTP endpoint serving `/metrics`.

The parts they observe take plain callbacks (`on_move`, `on_apply`, ...), so
nothing outside this package imports prometheus_client.
"""
