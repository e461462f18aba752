"""scheduler: where should a pod go? kube-scheduler extender scoring by NUMA fit."""
