// Command devicemanager plays kubelet's side of device plugins with kubelet's own device
// manager (k8s.io/kubernetes pkg/kubelet/cm/devicemanager, the release pinned in go.mod):
// its registration server listens on DIR/kubelet.sock, plugins in DIR register with it,
// it dials them back, reads ListAndWatch, and its Allocate calls GetPreferredAllocation
// and Allocate on them exactly as kubelet's container manager does before a container
// starts. Its checkpoint is DIR/kubelet_internal_checkpoint.
//
// The manager is built with NewManagerImplAt, which the build adds to the vendored
// package (see _export/devicemanager_export.go); everything else is kubelet's code.
//
// Usage: devicemanager -dir DIR [-numa 0,1]. Then one JSON object per line on stdin, one
// answer per line on stdout, each with "error" ("" on success):
//
//	{"op":"wait_resource","resource":R,"capacity":N,"allocatable":N,"timeout_s":S}
//	    until GetCapacity reports those counts (either may be left out: then any
//	    registered count) → {"capacity","allocatable","devices":[{id,health,numa}]}
//	    (devices: GetAllocatableDevices, the healthy ones)
//	{"op":"allocate","pod":POD,"container":NAME,"affinity":[numa ids]|null}
//	    (NAME: an init or app container; init containers first, as kubelet does)
//	    the pod joins the active pods; the topology store answers the affinity for this
//	    container; GetTopologyHints, Allocate, then GetDeviceRunContainerOptions
//	    → {"hints","devices":{resource:[ids]},"options":{...}}
//	{"op":"devices","uid":UID,"container":NAME}   → {"devices":{resource:[ids]}} (GetDevices)
//	{"op":"remove_pod","uid":UID}   the pod leaves the active pods; UpdateAllocatedDevices
//	{"op":"restart"}   Stop, then a new manager on the same socket Start()s from the
//	    checkpoint, with the active pods' containers reported running
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cadvisorapi "github.com/google/cadvisor/info/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/cm/containermap"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager/bitmask"
)

type request struct {
	Op          string  `json:"op"`
	Resource    string  `json:"resource"`
	Capacity    *int64  `json:"capacity"`
	Allocatable *int64  `json:"allocatable"`
	TimeoutS    float64 `json:"timeout_s"`
	Pod         *v1.Pod `json:"pod"`
	Container   string  `json:"container"`
	Affinity    *[]int  `json:"affinity"`
	UID         string  `json:"uid"`
}

type device struct {
	ID     string `json:"id"`
	Health string `json:"health"`
	NUMA   []int  `json:"numa"`
}

type hint struct {
	NUMA      []int `json:"numa"`
	Preferred bool  `json:"preferred"`
}

type answer struct {
	Capacity    *int64                                   `json:"capacity,omitempty"`
	Allocatable *int64                                   `json:"allocatable,omitempty"`
	Devices     any                                      `json:"devices,omitempty"`
	Hints       map[string][]hint                        `json:"hints,omitempty"`
	Options     *devicemanager.DeviceRunContainerOptions `json:"options,omitempty"`
	Error       string                                   `json:"error"`
}

// store is the topology manager as the device manager sees it: the affinity of each
// container (what the topology manager's Admit would have stored), none by default.
type store struct {
	mu       sync.Mutex
	affinity map[string]topologymanager.TopologyHint
}

func (s *store) GetAffinity(podUID, containerName string) topologymanager.TopologyHint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.affinity[podUID+"/"+containerName]
}

func (s *store) GetPolicy() topologymanager.Policy { return topologymanager.NewNonePolicy() }

// allReady is kubelet's "all pod sources seen" signal: the harness's pod list is complete.
type allReady struct{}

func (allReady) AddSource(string) {}
func (allReady) AllReady() bool   { return true }

type harness struct {
	socket string
	topo   []cadvisorapi.Node
	store  *store
	mu     sync.Mutex
	pods   []*v1.Pod
	m      *devicemanager.ManagerImpl
}

func (h *harness) activePods() []*v1.Pod {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*v1.Pod(nil), h.pods...)
}

// start builds a manager and starts it; the containers of the active pods are reported
// running, as the runtime would after a kubelet restart.
func (h *harness) start() error {
	m, err := devicemanager.NewManagerImplAt(h.socket, h.topo, h.store)
	if err != nil {
		return err
	}
	containers := containermap.NewContainerMap()
	running := sets.New[string]()
	for _, pod := range h.activePods() {
		for _, c := range pod.Spec.Containers {
			id := "cid-" + string(pod.UID) + "-" + c.Name
			containers.Add(string(pod.UID), c.Name, id)
			running.Insert(id)
		}
	}
	if err := m.Start(h.activePods, allReady{}, containers, running); err != nil {
		return err
	}
	h.m = m
	return nil
}

func devicesOf(in devicemanager.ResourceDeviceInstances) map[string][]string {
	out := map[string][]string{}
	for resource, devs := range in {
		ids := make([]string, 0, len(devs))
		for id := range devs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		out[resource] = ids
	}
	return out
}

func (h *harness) waitResource(req request) answer {
	deadline := time.Now().Add(time.Duration(req.TimeoutS * float64(time.Second)))
	for {
		capacity, allocatable, _ := h.m.GetCapacity()
		c, cok := capacity[v1.ResourceName(req.Resource)]
		a := allocatable[v1.ResourceName(req.Resource)]
		cv, av := c.Value(), a.Value()
		ok := cok && (req.Capacity == nil || *req.Capacity == cv) && (req.Allocatable == nil || *req.Allocatable == av)
		if ok || time.Now().After(deadline) {
			ans := answer{Capacity: &cv, Allocatable: &av}
			devs := []device{}
			for id, d := range h.m.GetAllocatableDevices()[req.Resource] {
				numa := []int{}
				if d.Topology != nil {
					for _, n := range d.Topology.Nodes {
						numa = append(numa, int(n.ID))
					}
				}
				devs = append(devs, device{ID: id, Health: d.Health, NUMA: numa})
			}
			sort.Slice(devs, func(i, j int) bool { return devs[i].ID < devs[j].ID })
			ans.Devices = devs
			if !ok {
				ans.Error = fmt.Sprintf("timed out after %gs waiting for %s (capacity %d, allocatable %d)", req.TimeoutS, req.Resource, cv, av)
			}
			return ans
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) allocate(req request) answer {
	if req.Pod == nil {
		return answer{Error: "allocate: no pod"}
	}
	pod := req.Pod
	var container *v1.Container
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == req.Container {
			container = &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == req.Container {
			container = &pod.Spec.Containers[i]
		}
	}
	if container == nil {
		return answer{Error: fmt.Sprintf("allocate: pod has no container %q", req.Container)}
	}
	h.mu.Lock()
	kept := h.pods[:0]
	for _, p := range h.pods {
		if p.UID != pod.UID {
			kept = append(kept, p)
		}
	}
	h.pods = append(kept, pod)
	h.mu.Unlock()

	key := string(pod.UID) + "/" + container.Name
	h.store.mu.Lock()
	if req.Affinity != nil {
		mask, err := bitmask.NewBitMask(*req.Affinity...)
		if err != nil {
			h.store.mu.Unlock()
			return answer{Error: err.Error()}
		}
		h.store.affinity[key] = topologymanager.TopologyHint{NUMANodeAffinity: mask, Preferred: true}
	} else {
		delete(h.store.affinity, key)
	}
	h.store.mu.Unlock()

	ans := answer{Hints: map[string][]hint{}}
	for resource, hints := range h.m.GetTopologyHints(pod, container) {
		out := []hint{}
		for _, th := range hints {
			numa := []int{}
			if th.NUMANodeAffinity != nil {
				numa = th.NUMANodeAffinity.GetBits()
			}
			out = append(out, hint{NUMA: numa, Preferred: th.Preferred})
		}
		ans.Hints[resource] = out
	}
	if err := h.m.Allocate(pod, container); err != nil {
		ans.Error = err.Error()
		ans.Devices = devicesOf(h.m.GetDevices(string(pod.UID), container.Name))
		return ans
	}
	opts, err := h.m.GetDeviceRunContainerOptions(pod, container)
	if err != nil {
		ans.Error = err.Error()
	}
	ans.Options = opts
	ans.Devices = devicesOf(h.m.GetDevices(string(pod.UID), container.Name))
	return ans
}

func (h *harness) handle(req request) answer {
	switch req.Op {
	case "wait_resource":
		return h.waitResource(req)
	case "allocate":
		return h.allocate(req)
	case "devices":
		return answer{Devices: devicesOf(h.m.GetDevices(req.UID, req.Container))}
	case "remove_pod":
		h.mu.Lock()
		kept := h.pods[:0]
		for _, p := range h.pods {
			if string(p.UID) != req.UID {
				kept = append(kept, p)
			}
		}
		h.pods = kept
		h.mu.Unlock()
		h.m.UpdateAllocatedDevices()
		return answer{}
	case "restart":
		if err := h.m.Stop(); err != nil {
			return answer{Error: "stop: " + err.Error()}
		}
		if err := h.start(); err != nil {
			return answer{Error: "start: " + err.Error()}
		}
		return answer{}
	}
	return answer{Error: fmt.Sprintf("unknown op %q", req.Op)}
}

func main() {
	dir := flag.String("dir", "", "socket directory (kubelet.sock, the plugins' sockets, the checkpoint)")
	numa := flag.String("numa", "0", "the machine's NUMA node ids, comma-separated")
	klog.InitFlags(nil)
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "devicemanager: -dir DIR is required")
		os.Exit(2)
	}
	h := &harness{socket: filepath.Join(*dir, "kubelet.sock"), store: &store{affinity: map[string]topologymanager.TopologyHint{}}}
	for _, field := range strings.Split(*numa, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil {
			fmt.Fprintln(os.Stderr, "devicemanager: -numa:", err)
			os.Exit(2)
		}
		h.topo = append(h.topo, cadvisorapi.Node{Id: id})
	}
	if err := h.start(); err != nil {
		fmt.Fprintln(os.Stderr, "devicemanager: start:", err)
		os.Exit(1)
	}

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		ans := answer{}
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			ans.Error = "bad request: " + err.Error()
		} else {
			ans = h.handle(req)
		}
		if err := out.Encode(ans); err != nil {
			os.Exit(1)
		}
	}
	_ = h.m.Stop()
}
