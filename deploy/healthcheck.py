"""The container's HEALTHCHECK: the web chat answers its page on loopback (exit 0) or not (1)."""

import os
import sys
import urllib.request

port = os.environ.get("RAG_PORT", "7860")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
