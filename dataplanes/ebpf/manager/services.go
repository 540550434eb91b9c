package manager

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/edgebpf/edgebpf/netsetup"
)

// MaxInstancesPerRequest bounds the count of POST /services/{name}/instances.
const MaxInstancesPerRequest = 64

// serviceRoutes change the node's services and instances through its registry, so every data
// plane and every module gets the same events as for the node's own services.
func (m *Manager) serviceRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/services", Handler: m.listServices},
		{Method: "POST", Pattern: "/services", Handler: m.addService},
		{Method: "GET", Pattern: "/services/{name}", Handler: m.getService},
		{Method: "DELETE", Pattern: "/services/{name}", Handler: m.removeService},
		{Method: "POST", Pattern: "/services/{name}/instances", Handler: m.addInstances},
		{Method: "DELETE", Pattern: "/services/{name}/instances/{instance}", Handler: m.removeInstance},
	}
}

func (m *Manager) serviceStatus(name string) (netsetup.ServiceStatus, bool) {
	for _, s := range m.node.Status().Services {
		if s.Name == name {
			return s, true
		}
	}
	return netsetup.ServiceStatus{}, false
}

func instanceStatus(in *netsetup.Instance) netsetup.InstanceStatus {
	return netsetup.InstanceStatus{Name: in.Name, Namespace: in.NS.Name, NSIP: in.NSIP.String(),
		InstanceIP: in.InstanceIP.String(), Veth: in.Veth}
}

func (m *Manager) listServices(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, m.node.Status().Services)
}

func (m *Manager) getService(w http.ResponseWriter, r *http.Request) {
	s, ok := m.serviceStatus(r.PathValue("name"))
	if !ok {
		WriteError(w, http.StatusNotFound, m.noService(r.PathValue("name")))
		return
	}
	WriteJSON(w, http.StatusOK, s)
}

func (m *Manager) noService(name string) error {
	return fmt.Errorf("no service %q on node %s: GET /services lists them", name, m.node.Name())
}

// serviceRequest is the body of POST /services.
type serviceRequest struct {
	Name string `json:"name"`
}

func (m *Manager) addService(w http.ResponseWriter, r *http.Request) {
	var req serviceRequest
	if !DecodeJSON(w, r, &req) {
		return
	}
	if err := validServiceName(req.Name); err != nil {
		WriteError(w, http.StatusBadRequest, err)
		return
	}
	if _, ok := m.node.Registry.Service(req.Name); ok {
		WriteError(w, http.StatusConflict, fmt.Errorf("service %s already exists on node %s", req.Name, m.node.Name()))
		return
	}
	if _, err := m.node.AddService(req.Name); err != nil {
		WriteError(w, topologyStatus(err), err)
		return
	}
	s, _ := m.serviceStatus(req.Name)
	WriteJSON(w, http.StatusCreated, s)
}

func (m *Manager) removeService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := m.node.Registry.Service(name); !ok {
		WriteError(w, http.StatusNotFound, m.noService(name))
		return
	}
	if err := m.node.RemoveService(name); err != nil {
		WriteError(w, http.StatusInternalServerError, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"deleted": name})
}

// instancesRequest is the optional body of POST /services/{name}/instances.
type instancesRequest struct {
	Count *int `json:"count"`
}

func (m *Manager) addInstances(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	count := 1
	if r.ContentLength != 0 {
		var req instancesRequest
		if !DecodeJSON(w, r, &req) {
			return
		}
		if req.Count != nil {
			count = *req.Count
		}
	}
	if count < 1 || count > MaxInstancesPerRequest {
		WriteError(w, http.StatusBadRequest, fmt.Errorf("count %d is out of range: use 1 to %d", count, MaxInstancesPerRequest))
		return
	}
	if _, ok := m.node.Registry.Service(name); !ok {
		WriteError(w, http.StatusNotFound, m.noService(name))
		return
	}
	// All or none: instances created before a failure are removed again.
	var created []*netsetup.Instance
	for range count {
		in, err := m.node.AddInstance(name)
		if err != nil {
			for _, c := range created {
				err = errors.Join(err, m.node.RemoveInstance(c))
			}
			WriteError(w, topologyStatus(err), err)
			return
		}
		created = append(created, in)
	}
	out := make([]netsetup.InstanceStatus, len(created))
	for i, in := range created {
		out[i] = instanceStatus(in)
	}
	WriteJSON(w, http.StatusCreated, out)
}

func (m *Manager) removeInstance(w http.ResponseWriter, r *http.Request) {
	name, which := r.PathValue("name"), r.PathValue("instance")
	if _, ok := m.node.Registry.Service(name); !ok {
		WriteError(w, http.StatusNotFound, m.noService(name))
		return
	}
	var found *netsetup.Instance
	for _, in := range m.node.Registry.Instances(name) {
		if in.Name == which || strconv.Itoa(in.Index) == which {
			found = in
			break
		}
	}
	if found == nil {
		WriteError(w, http.StatusNotFound, fmt.Errorf("service %s has no instance %q: give its name (%s-0) or index (0); GET /services/%s lists them", name, which, name, name))
		return
	}
	if err := m.node.RemoveInstance(found); err != nil {
		WriteError(w, http.StatusInternalServerError, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"deleted": found.Name})
}

// topologyStatus is the HTTP status for a failed service or instance creation: 409 when a
// module chain is full, 500 otherwise.
func topologyStatus(err error) int {
	if errors.Is(err, ErrChainFull) {
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// validServiceName follows netsetup's rule for names, so that a bad name is a 400 here.
func validServiceName(s string) error {
	if s == "" || len(s) > 40 {
		return fmt.Errorf("service name %q must be 1 to 40 characters long", s)
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(s)-1) {
			return fmt.Errorf("service name %q may hold only lower-case letters, digits and inner dashes", s)
		}
	}
	return nil
}
