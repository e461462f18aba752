// Command cdi_check loads the CDI spec files of a folder with the CDI library container
// runtimes use (tags.cncf.io/container-device-interface, the release pinned in go.mod)
// and resolves the given fully qualified device ids, as containerd and CRI-O do for the
// CDI devices kubelet passes them.
//
// Usage: cdi_check -dir DIR ID... → stdout {"errors": [...], "devices": {id: edits|null}}
// where errors are the library's complaints about the spec files (version, names,
// fields) and edits are the resolved container edits of each id (null when unknown).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"

	"tags.cncf.io/container-device-interface/pkg/cdi"
	specs "tags.cncf.io/container-device-interface/specs-go"
)

type output struct {
	Errors  []string                         `json:"errors"`
	Devices map[string]*specs.ContainerEdits `json:"devices"`
}

func main() {
	dir := flag.String("dir", "", "CDI spec folder")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "cdi_check: -dir DIR is required")
		os.Exit(2)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(*dir), cdi.WithAutoRefresh(false))
	out := output{Errors: []string{}, Devices: map[string]*specs.ContainerEdits{}}
	if err != nil {
		out.Errors = append(out.Errors, err.Error())
	}
	for path, errs := range cache.GetErrors() {
		for _, e := range errs {
			out.Errors = append(out.Errors, path+": "+e.Error())
		}
	}
	sort.Strings(out.Errors)
	for _, id := range flag.Args() {
		if dev := cache.GetDevice(id); dev != nil {
			edits := dev.ContainerEdits
			out.Devices[id] = &edits
		} else {
			out.Devices[id] = nil
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
