"""respd: a self-hosted OpenAI Responses API server."""

import os

# numpy's OpenBLAS starts a thread per core for each product; the ones respd makes (a query against a few
# thousand vectors) take well under a millisecond alone, and on a busy host the threads' spin-waits made an
# IVF probe 6.6 ms instead of 0.4. Set before anything imports numpy; an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
