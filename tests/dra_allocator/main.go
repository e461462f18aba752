// Command dra_allocator runs kube-scheduler's DRA allocator (the structured allocator of
// k8s.io/dynamic-resource-allocation, the release pinned in go.mod: the code the
// DynamicResources plugin calls in Filter) on objects given as JSON, so tests can check
// that topolet's ResourceSlices, DeviceClass and example claims allocate as intended.
//
// stdin: one JSON object
//
//	{"node": NAME, "slices": [ResourceSlice...], "classes": [DeviceClass...],
//	 "claims": [ResourceClaim...], "allocated": [[driver, pool, device], ...]}
//
// stdout: {"results": [AllocationResult per claim] | null, "error": ""}. results is null
// when the claims cannot all be allocated on that node (the pod stays pending there);
// error is set for invalid input (a bad CEL expression, an unknown class).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/dynamic-resource-allocation/structured"
)

type input struct {
	Node      string                       `json:"node"`
	Slices    []*resourceapi.ResourceSlice `json:"slices"`
	Classes   []*resourceapi.DeviceClass   `json:"classes"`
	Claims    []*resourceapi.ResourceClaim `json:"claims"`
	Allocated [][3]string                  `json:"allocated"`
}

type output struct {
	Results []resourceapi.AllocationResult `json:"results"`
	Error   string                         `json:"error"`
}

type classes map[string]*resourceapi.DeviceClass

func (c classes) List() ([]*resourceapi.DeviceClass, error) {
	out := make([]*resourceapi.DeviceClass, 0, len(c))
	for _, class := range c {
		out = append(out, class)
	}
	return out, nil
}

func (c classes) Get(name string) (*resourceapi.DeviceClass, error) {
	if class, ok := c[name]; ok {
		return class, nil
	}
	return nil, apierrors.NewNotFound(resourceapi.Resource("deviceclasses"), name)
}

// defaulted applies kube-apiserver's defaulting of resource.k8s.io/v1 claims (the
// allocator sees stored objects): allocationMode ExactCount, count 1.
func defaulted(claims []*resourceapi.ResourceClaim) {
	for _, claim := range claims {
		for i := range claim.Spec.Devices.Requests {
			exactly := claim.Spec.Devices.Requests[i].Exactly
			if exactly == nil {
				continue
			}
			if exactly.AllocationMode == "" {
				exactly.AllocationMode = resourceapi.DeviceAllocationModeExactCount
			}
			if exactly.AllocationMode == resourceapi.DeviceAllocationModeExactCount && exactly.Count == 0 {
				exactly.Count = 1
			}
		}
	}
}

func run(in input) output {
	defaulted(in.Claims)
	ctx := context.Background()
	lister := classes{}
	for _, class := range in.Classes {
		lister[class.Name] = class
	}
	allocated := sets.New[structured.DeviceID]()
	for _, id := range in.Allocated {
		allocated.Insert(structured.MakeDeviceID(id[0], id[1], id[2]))
	}
	state := structured.AllocatedState{
		AllocatedDevices:         allocated,
		AllocatedSharedDeviceIDs: sets.New[structured.SharedDeviceID](),
		AggregatedCapacity:       structured.NewConsumedCapacityCollection(),
	}
	// Kubernetes 1.34's defaults: AdminAccess, PrioritizedList and DeviceStatus are beta
	// (on); the rest are alpha (off).
	features := structured.Features{AdminAccess: true, PrioritizedList: true, DeviceStatus: true}
	alloc, err := structured.NewAllocator(ctx, features, state, lister, in.Slices, cel.NewCache(10, cel.Features{}))
	if err != nil {
		return output{Error: err.Error()}
	}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: in.Node, Labels: map[string]string{"kubernetes.io/hostname": in.Node}}}
	results, err := alloc.Allocate(ctx, node, in.Claims)
	if err != nil {
		return output{Error: err.Error()}
	}
	return output{Results: results}
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintf(os.Stderr, "dra_allocator: stdin: %v\n", err)
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(run(in)); err != nil {
		fmt.Fprintf(os.Stderr, "dra_allocator: stdout: %v\n", err)
		os.Exit(1)
	}
}
