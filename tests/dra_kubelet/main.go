// Command dra_kubelet plays kubelet's side of a DRA driver with kubelet's own code
// (k8s.io/kubernetes, the release pinned in go.mod): the plugin manager watches a
// registry folder for registration sockets (pkg/kubelet/pluginmanager), hands DRA plugins
// to the DRA plugin manager (pkg/kubelet/cm/dra/plugin: version choice, gRPC client), and
// the calls below go through that client exactly as kubelet's DRA manager makes them.
//
// Usage: dra_kubelet -registry DIR. Then one JSON object per line on stdin, one answer
// per line on stdout, each with "error" ("" on success):
//
//	{"op":"wait","driver":NAME,"timeout_s":N}   until kubelet has registered the driver
//	{"op":"prepare","driver":NAME,"claims":[{"namespace","uid","name"}]}   → {"response":{...}}
//	{"op":"unprepare","driver":NAME,"claims":[...]}                         → {"response":{...}}
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registration "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	draplugin "k8s.io/kubernetes/pkg/kubelet/cm/dra/plugin"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"
)

type claim struct {
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
	Name      string `json:"name"`
}

type request struct {
	Op       string  `json:"op"`
	Driver   string  `json:"driver"`
	Claims   []claim `json:"claims"`
	TimeoutS float64 `json:"timeout_s"`
}

type answer struct {
	Response any    `json:"response,omitempty"`
	Error    string `json:"error"`
}

// allReady is kubelet's "all pod sources seen" signal; the harness has no pod sources.
type allReady struct{}

func (allReady) AddSource(string) {}
func (allReady) AllReady() bool   { return true }

func claims(in []claim) []*drapb.Claim {
	out := make([]*drapb.Claim, 0, len(in))
	for _, c := range in {
		out = append(out, &drapb.Claim{Namespace: c.Namespace, UID: c.UID, Name: c.Name})
	}
	return out
}

func handle(ctx context.Context, dra *draplugin.DRAPluginManager, req request) answer {
	switch req.Op {
	case "wait":
		deadline := time.Now().Add(time.Duration(req.TimeoutS * float64(time.Second)))
		for {
			if _, err := dra.GetPlugin(req.Driver); err == nil {
				return answer{}
			} else if time.Now().After(deadline) {
				return answer{Error: err.Error()}
			}
			time.Sleep(20 * time.Millisecond)
		}
	case "prepare", "unprepare":
		plugin, err := dra.GetPlugin(req.Driver)
		if err != nil {
			return answer{Error: err.Error()}
		}
		var resp any
		if req.Op == "prepare" {
			resp, err = plugin.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: claims(req.Claims)})
		} else {
			resp, err = plugin.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: claims(req.Claims)})
		}
		if err != nil {
			return answer{Error: err.Error()}
		}
		return answer{Response: resp}
	}
	return answer{Error: fmt.Sprintf("unknown op %q", req.Op)}
}

func main() {
	registry := flag.String("registry", "", "folder watched for plugin registration sockets")
	klog.InitFlags(nil)
	flag.Parse()
	if *registry == "" {
		fmt.Fprintln(os.Stderr, "dra_kubelet: -registry DIR is required")
		os.Exit(2)
	}
	ctx := context.Background()
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}}
	// No API client: kubelet's slice wiping is not exercised here.
	dra := draplugin.NewDRAPluginManager(ctx, nil, func() (*v1.Node, error) { return node, nil }, nil, 30*time.Second)
	pm := pluginmanager.NewPluginManager(*registry, record.NewFakeRecorder(100))
	pm.AddHandler(registration.DRAPlugin, dra)
	stop := make(chan struct{})
	go pm.Run(allReady{}, stop)

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		ans := answer{}
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			ans.Error = "bad request: " + err.Error()
		} else {
			ans = handle(ctx, dra, req)
		}
		if err := out.Encode(ans); err != nil {
			os.Exit(1)
		}
	}
	close(stop)
}
