// Command oracle answers questions about kubelet's CPU manager and topology manager by
// calling kubelet's own packages (k8s.io/kubernetes, the release pinned in go.mod).
//
// It reads one JSON object per line on stdin and writes one JSON object per line on
// stdout, in order. Every answer has "error" (a string, empty when the call succeeded).
//
//	{"op":"policy", "cpus":[[cpu,core,socket,numa,uncore],...], "num_reserved":N,
//	 "reserved":"cpu-list", "options":{...}, "tm_policy":"none"}
//	    NewStaticPolicy over that CPUTopology (a store whose policy is tm_policy), then
//	    Start on a fresh in-memory state: {"reserved":"...", "default":"..."}.
//	{"op":"allocate", "pod":{"uid":U, "init":[{"name","cpu","restartable"}],
//	 "containers":[{"name","cpu"}]}, "container":NAME, "affinity":[numa ids] | null}
//	    Allocate for that container of that (Guaranteed) pod, the store answering the
//	    given NUMA affinity: {"cpus":"...", "default":"..."}.
//	{"op":"remove", "pod":U, "container":NAME}          RemoveContainer: {"default":"..."}
//	{"op":"merge", "policy":P, "nodes":[ids], "distances":{"a":{"b":d}}, "options":{...},
//	 "providers":[ {resource: [{"numa":[ids]|null, "preferred":bool}] | null} | null ]}
//	    The topology manager policy's Merge: {"numa":[ids]|null, "preferred":b, "admit":b}.
//	{"op":"checkpoint", "policy":P, "default":"cpu-list", "entries":{pod:{ctr:"cpu-list"}}}
//	    The cpu_manager_state file kubelet writes: {"blob":"...", "checksum":N}.
//
// The alpha CPU manager options are enabled (CPUManagerPolicyAlphaOptions=true), as a node
// that uses them must.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"

	cadvisorapi "github.com/google/cadvisor/info/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/cm/cpumanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/cpumanager/state"
	"k8s.io/kubernetes/pkg/kubelet/cm/cpumanager/topology"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager/bitmask"
	"k8s.io/utils/cpuset"
)

type hintJSON struct {
	NUMA      []int `json:"numa"`
	Preferred bool  `json:"preferred"`
}

type containerJSON struct {
	Name        string `json:"name"`
	CPU         string `json:"cpu"`
	Restartable bool   `json:"restartable"`
}

type podJSON struct {
	UID        string          `json:"uid"`
	Init       []containerJSON `json:"init"`
	Containers []containerJSON `json:"containers"`
}

type request struct {
	Op string `json:"op"`
	// policy
	CPUs        [][5]int          `json:"cpus"`
	NumReserved int               `json:"num_reserved"`
	Reserved    string            `json:"reserved"`
	Options     map[string]string `json:"options"`
	TMPolicy    string            `json:"tm_policy"`
	// allocate / remove
	Pod       json.RawMessage `json:"pod"`
	Container string          `json:"container"`
	Affinity  *[]int          `json:"affinity"`
	// merge
	Policy    string                    `json:"policy"`
	Nodes     []int                     `json:"nodes"`
	Distances map[string]map[string]int `json:"distances"`
	Providers []map[string]*[]hintJSON  `json:"providers"`
	// checkpoint
	Default string                       `json:"default"`
	Entries map[string]map[string]string `json:"entries"`
}

type response map[string]any

// store is the topology manager as the static policy sees it: the affinity the test chose
// for the next container, and a policy whose name the option checks read.
type store struct {
	policy   topologymanager.Policy
	affinity topologymanager.TopologyHint
}

func (s *store) GetAffinity(podUID, containerName string) topologymanager.TopologyHint {
	return s.affinity
}

func (s *store) GetPolicy() topologymanager.Policy { return s.policy }

// namedPolicy is a topology manager policy that only has a name (Merge is never called
// through the store).
type namedPolicy struct{ name string }

func (p namedPolicy) Name() string { return p.name }
func (p namedPolicy) Merge([]map[string][]topologymanager.TopologyHint) (topologymanager.TopologyHint, bool) {
	return topologymanager.TopologyHint{}, true
}

type oracle struct {
	policy cpumanager.Policy
	state  state.State
	store  *store
}

func cpuTopology(cpus [][5]int) *topology.CPUTopology {
	details := topology.CPUDetails{}
	cores, sockets := map[int]bool{}, map[int]bool{}
	for _, c := range cpus {
		details[c[0]] = topology.CPUInfo{CoreID: c[1], SocketID: c[2], NUMANodeID: c[3], UncoreCacheID: c[4]}
		cores[c[1]], sockets[c[2]] = true, true
	}
	return &topology.CPUTopology{
		NumCPUs:        len(cpus),
		NumCores:       len(cores),
		NumSockets:     len(sockets),
		NumNUMANodes:   details.NUMANodes().Size(),
		NumUncoreCache: details.UncoreCaches().Size(),
		CPUDetails:     details,
	}
}

func mask(ids []int) (bitmask.BitMask, error) {
	if ids == nil {
		return nil, nil
	}
	return bitmask.NewBitMask(ids...)
}

func (o *oracle) newPolicy(r *request) response {
	reserved, err := cpuset.Parse(r.Reserved)
	if err != nil {
		return response{"error": err.Error()}
	}
	tm := r.TMPolicy
	if tm == "" {
		tm = topologymanager.PolicyNone
	}
	o.store = &store{policy: namedPolicy{tm}}
	o.policy, o.state = nil, nil
	p, err := cpumanager.NewStaticPolicy(cpuTopology(r.CPUs), r.NumReserved, reserved, o.store, r.Options)
	if err != nil {
		return response{"error": err.Error()}
	}
	st := state.NewMemoryState()
	if err := p.Start(st); err != nil {
		return response{"error": err.Error()}
	}
	o.policy, o.state = p, st
	// Reserved CPUs are not exported; they are what is neither allocatable nor assigned.
	return response{"error": "", "default": st.GetDefaultCPUSet().String(),
		"allocatable": p.GetAllocatableCPUs(st).String()}
}

func guaranteed(c containerJSON) (v1.Container, error) {
	q, err := resource.ParseQuantity(c.CPU)
	if err != nil {
		return v1.Container{}, fmt.Errorf("container %q: cpu %q: %w", c.Name, c.CPU, err)
	}
	rl := v1.ResourceList{v1.ResourceCPU: q, v1.ResourceMemory: resource.MustParse("1Gi")}
	ctr := v1.Container{Name: c.Name, Resources: v1.ResourceRequirements{Requests: rl, Limits: rl.DeepCopy()}}
	if c.Restartable {
		always := v1.ContainerRestartPolicyAlways
		ctr.RestartPolicy = &always
	}
	return ctr, nil
}

func buildPod(raw json.RawMessage) (*v1.Pod, error) {
	var pj podJSON
	if err := json.Unmarshal(raw, &pj); err != nil {
		return nil, err
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(pj.UID), Name: pj.UID, Namespace: "default"}}
	for _, c := range pj.Init {
		ctr, err := guaranteed(c)
		if err != nil {
			return nil, err
		}
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, ctr)
	}
	for _, c := range pj.Containers {
		ctr, err := guaranteed(c)
		if err != nil {
			return nil, err
		}
		pod.Spec.Containers = append(pod.Spec.Containers, ctr)
	}
	return pod, nil
}

func findContainer(pod *v1.Pod, name string) *v1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func (o *oracle) allocate(r *request) response {
	if o.policy == nil {
		return response{"error": "oracle: no policy (send op policy first)"}
	}
	pod, err := buildPod(r.Pod)
	if err != nil {
		return response{"error": "oracle: bad pod: " + err.Error()}
	}
	ctr := findContainer(pod, r.Container)
	if ctr == nil {
		return response{"error": "oracle: no container " + strconv.Quote(r.Container) + " in pod"}
	}
	o.store.affinity = topologymanager.TopologyHint{Preferred: true}
	if r.Affinity != nil {
		m, err := mask(*r.Affinity)
		if err != nil {
			return response{"error": "oracle: bad affinity: " + err.Error()}
		}
		o.store.affinity.NUMANodeAffinity = m
	}
	if err := o.policy.Allocate(o.state, pod, ctr); err != nil {
		return response{"error": err.Error(), "default": o.state.GetDefaultCPUSet().String()}
	}
	got, _ := o.state.GetCPUSet(string(pod.UID), ctr.Name)
	return response{"error": "", "cpus": got.String(), "default": o.state.GetDefaultCPUSet().String()}
}

func (o *oracle) remove(r *request) response {
	if o.policy == nil {
		return response{"error": "oracle: no policy (send op policy first)"}
	}
	var uid string
	if err := json.Unmarshal(r.Pod, &uid); err != nil {
		return response{"error": "oracle: pod must be a UID string"}
	}
	if err := o.policy.RemoveContainer(o.state, uid, r.Container); err != nil {
		return response{"error": err.Error()}
	}
	return response{"error": "", "default": o.state.GetDefaultCPUSet().String()}
}

func merge(r *request) response {
	opts, err := topologymanager.NewPolicyOptions(r.Options)
	if err != nil {
		return response{"error": err.Error()}
	}
	maxID := 0
	for _, n := range r.Nodes {
		maxID = max(maxID, n)
	}
	var nodes []cadvisorapi.Node
	for _, n := range r.Nodes {
		node := cadvisorapi.Node{Id: n}
		if row, ok := r.Distances[strconv.Itoa(n)]; ok {
			node.Distances = make([]uint64, maxID+1)
			for to, d := range row {
				t, err := strconv.Atoi(to)
				if err != nil || t < 0 || t > maxID {
					return response{"error": "oracle: bad distance key " + strconv.Quote(to)}
				}
				node.Distances[t] = uint64(d)
			}
		}
		nodes = append(nodes, node)
	}
	info, err := topologymanager.NewNUMAInfo(nodes, opts)
	if err != nil {
		return response{"error": err.Error()}
	}
	if r.Policy != topologymanager.PolicyNone && len(info.Nodes) > opts.MaxAllowableNUMANodes {
		return response{"error": fmt.Sprintf("unsupported on machines with more than %v NUMA Nodes", opts.MaxAllowableNUMANodes)}
	}
	var policy topologymanager.Policy
	switch r.Policy {
	case topologymanager.PolicyNone:
		policy = topologymanager.NewNonePolicy()
	case topologymanager.PolicyBestEffort:
		policy = topologymanager.NewBestEffortPolicy(info, opts)
	case topologymanager.PolicyRestricted:
		policy = topologymanager.NewRestrictedPolicy(info, opts)
	case topologymanager.PolicySingleNumaNode:
		policy = topologymanager.NewSingleNumaNodePolicy(info, opts)
	default:
		return response{"error": fmt.Sprintf("unknown policy: \"%s\"", r.Policy)}
	}
	var providers []map[string][]topologymanager.TopologyHint
	for _, p := range r.Providers {
		if p == nil {
			providers = append(providers, nil)
			continue
		}
		hints := map[string][]topologymanager.TopologyHint{}
		for res, list := range p {
			if list == nil {
				hints[res] = nil
				continue
			}
			out := []topologymanager.TopologyHint{}
			for _, h := range *list {
				m, err := mask(h.NUMA)
				if err != nil {
					return response{"error": "oracle: bad hint: " + err.Error()}
				}
				out = append(out, topologymanager.TopologyHint{NUMANodeAffinity: m, Preferred: h.Preferred})
			}
			hints[res] = out
		}
		providers = append(providers, hints)
	}
	best, admit := policy.Merge(providers)
	var numa []int
	if best.NUMANodeAffinity != nil {
		numa = best.NUMANodeAffinity.GetBits()
		sort.Ints(numa)
		if numa == nil {
			numa = []int{}
		}
	}
	return response{"error": "", "numa": numa, "preferred": best.Preferred, "admit": admit}
}

func checkpoint(r *request) response {
	cp := state.NewCPUManagerCheckpoint()
	cp.PolicyName, cp.DefaultCPUSet = r.Policy, r.Default
	for pod, ctrs := range r.Entries {
		cp.Entries[pod] = map[string]string{}
		for name, cpus := range ctrs {
			cp.Entries[pod][name] = cpus
		}
	}
	blob, err := cp.MarshalCheckpoint()
	if err != nil {
		return response{"error": err.Error()}
	}
	return response{"error": "", "blob": string(blob), "checksum": uint64(cp.Checksum)}
}

func main() {
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("logtostderr", "false")
	_ = klogFlags.Set("alsologtostderr", "false")
	_ = klogFlags.Set("stderrthreshold", "FATAL")
	klog.SetOutput(discard{})
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(map[string]bool{"CPUManagerPolicyAlphaOptions": true}); err != nil {
		fmt.Fprintln(os.Stderr, "oracle: feature gates:", err)
		os.Exit(1)
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	o := &oracle{}
	for in.Scan() {
		var r request
		var resp response
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			resp = response{"error": "oracle: bad request: " + err.Error()}
		} else {
			switch r.Op {
			case "policy":
				resp = o.newPolicy(&r)
			case "allocate":
				resp = o.allocate(&r)
			case "remove":
				resp = o.remove(&r)
			case "merge":
				resp = merge(&r)
			case "checkpoint":
				resp = checkpoint(&r)
			case "version":
				resp = response{"error": ""}
			default:
				resp = response{"error": "oracle: unknown op " + strconv.Quote(r.Op)}
			}
		}
		if err := enc.Encode(resp); err != nil {
			fmt.Fprintln(os.Stderr, "oracle: write:", err)
			os.Exit(1)
		}
		if err := out.Flush(); err != nil {
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "oracle: read:", err)
		os.Exit(1)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
