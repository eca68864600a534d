"""`egress-agent --kubernetes`: pods and namespaces from the Kubernetes API.

- `watch`: list-then-watch one kind with resourceVersion bookkeeping (bookmarks, resume, 410 -> re-list, backoff);
- `inventory`: joins the watch (labels) with CNI ADDs (IP, interface) into pod and namespace records;
- `watcher`: what the agent starts: the client configuration, the two watches, periodic retries, health.
"""
