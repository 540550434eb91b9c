package manager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
}

// Handler serves the REST API. Every response is JSON; errors are {"error": "..."} with a
// 4xx or 5xx status.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ebpf", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusOK, m.List()) })
	mux.HandleFunc("POST /ebpf", m.handleCreate)
	mux.HandleFunc("DELETE /ebpf", func(w http.ResponseWriter, r *http.Request) {
		ids, err := m.DeleteAll()
		if err != nil {
			WriteError(w, http.StatusInternalServerError, err)
			return
		}
		if ids == nil {
			ids = []int{}
		}
		WriteJSON(w, http.StatusOK, map[string]any{"deleted": ids})
	})
	mux.HandleFunc("GET /ebpf/{id}", func(w http.ResponseWriter, r *http.Request) {
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
	})
	mux.HandleFunc("DELETE /ebpf/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		if err := m.Delete(id); err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, ErrNotFound) {
				status = http.StatusNotFound
			}
			WriteError(w, status, err)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"deleted": []int{id}})
	})
	mux.HandleFunc("GET /modules", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusOK, m.Modules()) })
	mux.HandleFunc("GET /chains", func(w http.ResponseWriter, r *http.Request) {
		c, err := m.Chains()
		if err != nil {
			WriteError(w, http.StatusInternalServerError, err)
			return
		}
		WriteJSON(w, http.StatusOK, c)
	})
	mux.HandleFunc("/ebpf/{id}/{rest...}", m.handleModule)
	return limitBody(jsonMisses(mux, "see docs/api/openapi.json"))
}

// jsonMisses serves mux, but answers requests no route matches with a JSON error: 404, or
// 405 with the Allow header when the path exists for other methods.
func jsonMisses(mux *http.ServeMux, hint string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &statusProbe{header: http.Header{}}
		mux.ServeHTTP(probe, r)
		if allow := probe.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		if probe.status == http.StatusMethodNotAllowed {
			WriteError(w, probe.status, fmt.Errorf("%s is not allowed on %s: use %s", r.Method, r.URL.Path, probe.header.Get("Allow")))
			return
		}
		WriteError(w, http.StatusNotFound, fmt.Errorf("no route %s %s: %s", r.Method, r.URL.Path, hint))
	})
}

// statusProbe records what ServeMux would answer to an unmatched request.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(status int)      { p.status = status }

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
	sub := http.NewServeMux()
	for _, rt := range routes {
		sub.HandleFunc(rt.Method+" "+rt.Pattern, rt.Handler)
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + r.PathValue("rest")
	r2.URL.RawPath = ""
	jsonMisses(sub, fmt.Sprintf("module %d has no such route", id)).ServeHTTP(w, r2)
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

// StrictJSON decodes b into v, rejecting unknown fields and trailing data, with a message
// that says what was wrong.
func StrictJSON(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("request body is empty: send a JSON object")
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
