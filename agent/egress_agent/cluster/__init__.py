"""Running several agents as one cluster on etcd (reached through `store.etcd_client`).

- `membership`: this node's registration under a lease kept alive in the background;
- `election`: the controller leader (etcd's v3election API) and its write guard;
- `detector`: fast failure detection by probing the other agents directly;
- `fencing`: which floating IPs this node may claim, as events for the datapath.
"""
