"""Provider logs the way Terraform's plugin logging expects them: hclog JSON lines on stderr.

go-plugin reads a plugin's stderr line by line; a line that is a JSON object
with `@level`, `@message` and `@timestamp` (format 2006-01-02T15:04:05.000000Z07:00)
is re-emitted by Terraform's provider logger at that level, with every other
key as a key/value pair; Terraform shows it when TF_LOG or TF_LOG_PROVIDER
allows that level (TF_LOG_PATH writes it to a file). Anything else on stderr
is logged as a debug line, and stdout is reserved for the handshake.

The plugin filters too, like terraform-plugin-log does: TF_LOG_PROVIDER, else
TF_LOG, sets the level (TRACE, DEBUG, INFO, WARN, ERROR, OFF; JSON means
TRACE); unset, only warnings and errors are written.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys

MODULE = "provider.egress"  # the @module of every line (terraform-plugin-log uses "provider" too)

# Python level -> hclog level name.
_HCLOG_LEVEL = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
                logging.CRITICAL: "error"}
TRACE = 5  # below DEBUG, as hclog's trace is below its debug
_ENV_LEVEL = {"TRACE": TRACE, "JSON": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
              "ERROR": logging.ERROR, "OFF": logging.CRITICAL + 10}

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a key/value.
_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class HclogFormatter(logging.Formatter):
    """One hclog JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        line = {
            "@level": "trace" if record.levelno <= TRACE else _HCLOG_LEVEL.get(record.levelno, "info"),
            "@message": record.getMessage(),
            "@module": f"{MODULE}.{record.name}",
            "@timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                line[key] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"))


def level_from_env(env=os.environ) -> int:
    value = (env.get("TF_LOG_PROVIDER") or env.get("TF_LOG") or "").strip().upper()
    return _ENV_LEVEL.get(value, logging.WARNING)


def setup(stream=None) -> None:
    """Send every Python log record of the plugin process to stderr as hclog JSON, at the env's level."""
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(HclogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_from_env())
    # gRPC's and other libraries' chatter is not the provider's story.
    for noisy in ("grpc", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
