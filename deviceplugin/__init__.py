"""deviceplugin: what is kubelet told? Kubelet device plugins (v1beta1)."""
