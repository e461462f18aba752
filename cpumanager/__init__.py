"""cpumanager: who owns which CPU on this node? Static-policy CPU manager."""
