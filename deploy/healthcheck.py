"""The container's HEALTHCHECK: the server says it is ready to answer (exit 0) or not (1).

It asks ``/readyz`` (open to probes when ``RAG_AUTH`` signs users in), which answers 503 until the
index is open and the answerer loaded: the chat's page answered 200 before a replica could
answer a question, so it counted as healthy too early.
"""

import os
import sys
import urllib.request

port = os.environ.get("RAG_PORT", "7860")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:  # refused, timed out, or an HTTP error status (503: not ready yet)
    sys.exit(1)
