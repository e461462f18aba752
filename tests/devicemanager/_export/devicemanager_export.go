// This file is not part of the harness's package: the build (tests/devicemanager_go.py)
// copies it into the vendored k8s.io/kubernetes/pkg/kubelet/cm/devicemanager, because
// v1.34's only exported constructor, NewManagerImpl, fixes the registration socket at
// /var/lib/kubelet/device-plugins/kubelet.sock. It adds one function and changes nothing
// else: the manager built is the one NewManagerImpl builds, on another socket path.

package devicemanager

import (
	cadvisorapi "github.com/google/cadvisor/info/v1"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
)

// NewManagerImplAt is newManagerImpl (what NewManagerImpl and the package's tests call)
// with the registration socket at socketPath.
func NewManagerImplAt(socketPath string, topology []cadvisorapi.Node, store topologymanager.Store) (*ManagerImpl, error) {
	return newManagerImpl(socketPath, topology, store)
}
