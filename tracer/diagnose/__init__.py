"""Why a request failed: Docker's intended state against the kernel's (`check`), and a
verdict on every request that is not ok. Reads requests, topology and kernel state; never
the probes."""
