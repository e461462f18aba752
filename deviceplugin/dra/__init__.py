"""topolet's kubelet DRA plugin for driver ``gpu.topolet.io`` (see docs/dra.md)."""
