"""List, then watch, one kind of Kubernetes object for as long as the agent runs.

The bookkeeping a watcher needs and the client library leaves to its caller:

- the resourceVersion of the last event (bookmarks included: `allowWatchBookmarks`)
  is where the next watch resumes, so a dropped stream, the server's
  `timeoutSeconds`, or an apiserver restart costs no re-list;
- only `410 Gone` (the history we would resume from is compacted) re-lists;
- a failed request is retried with exponential backoff (capped), and the
  failure is kept for Health until a request works again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

log = logging.getLogger(__name__)

GONE = 410


class ListWatch:
    def __init__(
        self,
        what: str,
        list_fn: Callable[..., Any],
        on_list: Callable[[list], None],
        on_event: Callable[[str, Any], None],
        list_kwargs: Optional[dict] = None,
        timeout_seconds: int = 300,
        connect_timeout: float = 5.0,
        backoff: tuple[float, float] = (0.2, 5.0),
    ):
        self.what = what
        self.list_fn = list_fn
        self.on_list = on_list
        self.on_event = on_event
        self.list_kwargs = dict(list_kwargs or {})
        self.timeout_seconds = timeout_seconds
        # Read timeout above the server-side timeout: a silent connection is a broken one.
        self.request_timeout = (connect_timeout, timeout_seconds + 30)
        self.backoff = backoff
        self.resource_version: Optional[str] = None
        self.synced = False  # a list has been applied
        self.error = ""  # the last failure, "" while requests work
        self.lists = 0
        self.watches = 0
        self._stop = threading.Event()
        self._watch: Optional[k8s_watch.Watch] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"kube-{self.what}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            w.stop()  # shuts the socket down: the blocked read returns
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                self._watch_once()
                delay = self.backoff[0]
            except ApiException as err:
                if err.status == GONE:
                    log.info("kubernetes %s: resourceVersion %s is too old (410 Gone): re-listing", self.what,
                             self.resource_version)
                    self.resource_version = None
                    continue
                delay = self._failed(f"{err.status} {err.reason}", delay)
            except (HTTPError, OSError, ValueError) as err:
                delay = self._failed(str(err) or type(err).__name__, delay)
            except Exception as err:  # a handler failed: keep watching, but say so
                log.exception("kubernetes %s: handling an update failed", self.what)
                delay = self._failed(f"{type(err).__name__}: {err}", delay)

    def _failed(self, why: str, delay: float) -> float:
        if self._stop.is_set():
            return delay
        if not self.error:
            log.warning("kubernetes %s: %s; retrying with backoff (from resourceVersion %s)", self.what, why,
                        self.resource_version or "-, re-list")
        self.error = why
        self._stop.wait(delay)
        return min(delay * 2, self.backoff[1])

    def _ok(self) -> None:
        if self.error:
            log.info("kubernetes %s: connected again", self.what)
        self.error = ""

    def _list(self) -> None:
        result = self.list_fn(**self.list_kwargs, _request_timeout=self.request_timeout)
        self._ok()
        self.on_list(list(result.items or []))
        self.resource_version = result.metadata.resource_version
        self.lists += 1
        self.synced = True

    def _watch_once(self) -> None:
        """One watch request, from `resource_version` until the stream ends (server timeout, drop) or fails."""
        w = self._watch = k8s_watch.Watch()
        self.watches += 1
        try:
            for event in w.stream(
                self.list_fn,
                **self.list_kwargs,
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.timeout_seconds,
                _request_timeout=self.request_timeout,
            ):
                self._ok()
                if event["type"] != "BOOKMARK":
                    self.on_event(event["type"], event["object"])
                if w.resource_version:
                    self.resource_version = w.resource_version
                if self._stop.is_set():
                    return
            self._ok()  # a clean end of stream: resume from where we are
        finally:
            self._watch = None
