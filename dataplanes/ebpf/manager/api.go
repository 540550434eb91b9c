package manager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 1 << 20

// APIRoute is a route of the manager itself, for the API description and its test.
type APIRoute struct {
	Method, Pattern, Summary string
}

// APIRoutes are the manager's own routes. Module routes hang below /ebpf/{id}.
var APIRoutes = []APIRoute{
	{"GET", "/ebpf", "list the modules in chain order"},
	{"POST", "/ebpf", "create a module: {\"name\", \"config\"}"},
	{"DELETE", "/ebpf", "delete every module"},
	{"GET", "/ebpf/{id}", "one module"},
	{"DELETE", "/ebpf/{id}", "delete one module; the others keep their order"},
	{"GET", "/modules", "the module names this build can create"},
	{"GET", "/chains", "the programs the kernel runs on every bridge-side veth, per hook, in order"},
	{"GET", "/services", "the node's services with their instances"},
	{"POST", "/services", "add a service: {\"name\"}"},
	{"GET", "/services/{name}", "one service with its instances"},
	{"DELETE", "/services/{name}", "remove a service and its instances"},
	{"POST", "/services/{name}/instances", "add instances to a service: {\"count\"} (optional, default 1)"},
	{"DELETE", "/services/{name}/instances/{instance}", "remove one instance, by name or index"},
}

// Handler serves the REST API to local clients without a token: HandlerFor(Access{}).
func (m *Manager) Handler() http.Handler { return m.HandlerFor(Access{}) }

// HandlerFor serves the REST API to the clients a allows. Every response is JSON; errors are
// {"error": "..."} with a 4xx or 5xx status. Before any route runs, a request must name an
// allowed Host (403), carry the token if a has one (401), use a canonical path (404, never a
// redirect), and say Content-Type: application/json if it writes (415).
func (m *Manager) HandlerFor(a Access) http.Handler {
	del := func(w http.ResponseWriter, r *http.Request) {
		ids, err := m.DeleteAll()
		if err != nil {
			WriteError(w, http.StatusInternalServerError, err)
			return
		}
		if ids == nil {
			ids = []int{}
		}
		WriteJSON(w, http.StatusOK, map[string]any{"deleted": ids})
	}
	getOne := func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		inf, err := m.Get(id)
		if err != nil {
			WriteError(w, http.StatusNotFound, err)
			return
		}
		WriteJSON(w, http.StatusOK, inf)
	}
	delOne := func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		if err := m.Delete(id); err != nil {
			status := http.StatusInternalServerError
			switch {
			case errors.Is(err, ErrNotFound):
				status = http.StatusNotFound
			case errors.Is(err, ErrDependency):
				status = http.StatusConflict
			}
			WriteError(w, status, err)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"deleted": []int{id}})
	}
	chains := func(w http.ResponseWriter, r *http.Request) {
		c, err := m.Chains()
		if err != nil {
			WriteError(w, http.StatusInternalServerError, err)
			return
		}
		WriteJSON(w, http.StatusOK, c)
	}
	routes := []Route{
		{Method: "GET", Pattern: "/ebpf", Handler: func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusOK, m.List()) }},
		{Method: "POST", Pattern: "/ebpf", Handler: m.handleCreate},
		{Method: "DELETE", Pattern: "/ebpf", Handler: del},
		{Method: "GET", Pattern: "/ebpf/{id}", Handler: getOne},
		{Method: "DELETE", Pattern: "/ebpf/{id}", Handler: delOne},
		{Method: "GET", Pattern: "/modules", Handler: func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusOK, m.Modules()) }},
		{Method: "GET", Pattern: "/chains", Handler: chains},
		{Pattern: "/ebpf/{id}/{rest...}", Handler: m.handleModule},
	}
	routes = append(routes, m.serviceRoutes()...)
	h := jsonRouter(routes, "", "see docs/api/openapi.json")
	return limitBody(a.guard(canonicalPaths(requireJSON(h))))
}

// jsonRouter serves routes and answers everything else with a JSON error, never a redirect:
// 404 for a path no route has, 405 with the Allow header for a path that exists for other
// methods. A route without a method serves every method. Messages name paths with prefix.
func jsonRouter(routes []Route, prefix, hint string) http.Handler {
	mux := http.NewServeMux()
	methods := map[string][]string{} // path pattern -> methods served
	var paths []string
	for _, rt := range routes {
		if rt.Method == "" {
			mux.HandleFunc(rt.Pattern, rt.Handler)
			continue
		}
		mux.HandleFunc(rt.Method+" "+rt.Pattern, rt.Handler)
		if _, ok := methods[rt.Pattern]; !ok {
			paths = append(paths, rt.Pattern)
		}
		methods[rt.Pattern] = append(methods[rt.Pattern], rt.Method)
	}
	// Every path answers every method, so ServeMux never redirects a path that lacks the
	// method to the path with a trailing slash (which would match a {rest...} pattern).
	order := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
	for _, p := range paths {
		slices.SortStableFunc(methods[p], func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
		allow := strings.Join(methods[p], ", ")
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			WriteError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s is not allowed on %s: use %s", r.Method, prefix+r.URL.Path, allow))
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			WriteError(w, http.StatusNotFound, fmt.Errorf("no route %s %s: %s", r.Method, prefix+r.URL.Path, hint))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// canonicalPaths answers a path that is not in canonical form (//ebpf, /ebpf/1/../x, a
// trailing slash) with 404 instead of ServeMux's redirect with an HTML body.
func canonicalPaths(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		if p == "" || p[0] != '/' || path.Clean(p) != p {
			WriteError(w, http.StatusNotFound, fmt.Errorf("no route %s %s: paths are canonical, without //, . or .. segments or a trailing slash", r.Method, p))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// requireJSON refuses a write whose body is not declared JSON: every POST, PUT and PATCH,
// and a DELETE with a body, must say Content-Type: application/json (415). A web page can
// send text/plain or a form cross-origin without asking; it cannot send JSON.
func requireJSON(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write := r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch ||
			r.Method == http.MethodDelete && r.ContentLength != 0
		if write {
			ct := r.Header.Get("Content-Type")
			if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
				WriteError(w, http.StatusUnsupportedMediaType, fmt.Errorf("%s %s needs Content-Type: application/json, not %q", r.Method, r.URL.Path, ct))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		h.ServeHTTP(w, r)
	})
}

// createRequest is the body of POST /ebpf.
type createRequest struct {
	Name   string          `json:"name"`
	Config json.RawMessage `json:"config"`
}

func (m *Manager) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if !DecodeJSON(w, r, &req) {
		return
	}
	inf, err := m.Create(req.Name, req.Config)
	switch {
	case err == nil:
		WriteJSON(w, http.StatusCreated, inf)
	case errors.Is(err, ErrUnknownModule):
		WriteError(w, http.StatusNotFound, err)
	case errors.Is(err, ErrBadName), errors.Is(err, ErrBadConfig):
		WriteError(w, http.StatusBadRequest, err)
	case errors.Is(err, ErrChainFull), errors.Is(err, ErrDependency):
		WriteError(w, http.StatusConflict, err)
	default:
		WriteError(w, http.StatusInternalServerError, err)
	}
}

// handleModule dispatches /ebpf/{id}/... to the module's routes; they vanish with the module.
func (m *Manager) handleModule(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	routes, ok := m.Routes(id)
	if !ok {
		WriteError(w, http.StatusNotFound, fmt.Errorf("%w %d", ErrNotFound, id))
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + r.PathValue("rest")
	r2.URL.RawPath = ""
	jsonRouter(routes, fmt.Sprintf("/ebpf/%d", id), fmt.Sprintf("module %d has no such route", id)).ServeHTTP(w, r2)
}

func pathID(w http.ResponseWriter, r *http.Request) (int, bool) {
	s := r.PathValue("id")
	id, err := strconv.Atoi(s)
	if err != nil || id < 1 {
		WriteError(w, http.StatusBadRequest, fmt.Errorf("module id %q is not a positive integer", s))
		return 0, false
	}
	return id, true
}

// DecodeJSON decodes a request body strictly (unknown fields, trailing data and wrong types
// are errors) into v; on failure it writes a 400 (413 for an oversized body) and returns false.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			WriteError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body is larger than %d bytes", tooBig.Limit))
			return false
		}
		WriteError(w, http.StatusBadRequest, fmt.Errorf("read request body: %w", err))
		return false
	}
	if err := StrictJSON(body, v); err != nil {
		WriteError(w, http.StatusBadRequest, err)
		return false
	}
	return true
}

// StrictJSON decodes b into v, rejecting unknown fields, duplicate keys and trailing data,
// with a message that says what was wrong.
func StrictJSON(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("request body is empty: send a JSON object")
	}
	if err := noDuplicateKeys(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("field %q must be %s, not %s", te.Field, te.Type, te.Value)
		}
		return fmt.Errorf("malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return errors.New("malformed JSON: data after the object")
	}
	return nil
}

// WriteJSON writes v as JSON with the status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes {"error": message} with the status.
func WriteError(w http.ResponseWriter, status int, err error) {
	WriteJSON(w, status, map[string]string{"error": err.Error()})
}

// noDuplicateKeys walks b's tokens and refuses an object that names a key twice, at any
// depth; encoding/json would keep the last value. Keys are compared as encoding/json matches
// them to fields, ignoring case. Syntax errors are left to the decoder.
func noDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool // the next token in this object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF, or malformed JSON the decoder reports
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if k, isKey := tok.(string); isKey && top != nil && top.object && top.key {
			fold := strings.ToLower(k)
			if top.keys[fold] {
				return fmt.Errorf("malformed JSON: key %q appears twice in one object", k)
			}
			top.keys[fold] = true
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, keys: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: the next token of an enclosing object is a key.
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].key = true
		}
		if len(stack) == 0 && dec.More() {
			return nil // trailing data: the decoder says so
		}
	}
}
