"""What the API server says: the pod model and the Kubernetes adapter (bottom layer above ``topology``)."""
