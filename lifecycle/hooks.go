package lifecycle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/errdefs"
)

// Annotations through which clients other than the kubelet declare hooks.
// The kubelet runs the hooks of a pod spec itself and never sets these, so
// keying on them is what keeps crishim from running a kubelet pod's hooks
// a second time.
const (
	AnnotationPostStart        = "crishim.io/post-start"
	AnnotationPreStop          = "crishim.io/pre-stop"
	AnnotationTerminationGrace = "crishim.io/termination-grace-period"
)

// DefaultHookGrace is the grace of a container that declares hooks but no
// termination grace: Kubernetes' default terminationGracePeriodSeconds.
const DefaultHookGrace = 30 * time.Second

// Handler is one hook in the JSON shape of a Kubernetes LifecycleHandler:
// exactly one of its actions is set.
type Handler struct {
	Exec      *ExecAction      `json:"exec,omitempty"`
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
	Sleep     *SleepAction     `json:"sleep,omitempty"`
}

// ExecAction runs a command inside the container.
type ExecAction struct {
	Command []string `json:"command"`
}

// HTTPGetAction sends a GET request; Host defaults to the pod's IP.
type HTTPGetAction struct {
	Path        string       `json:"path,omitempty"`
	Port        Port         `json:"port"`
	Host        string       `json:"host,omitempty"`
	Scheme      string       `json:"scheme,omitempty"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
}

// HTTPHeader is one request header.
type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// TCPSocketAction opens (and closes) a TCP connection.
type TCPSocketAction struct {
	Port Port   `json:"port"`
	Host string `json:"host,omitempty"`
}

// SleepAction waits.
type SleepAction struct {
	Seconds int64 `json:"seconds"`
}

// Port is a Kubernetes IntOrString port. Only numbers can be used here: a
// named port refers to the pod spec's container ports, which the CRI never
// carries.
type Port int

// UnmarshalJSON accepts 8080 and "8080"; a name is an error.
func (p *Port) UnmarshalJSON(data []byte) error {
	var n int
	if err := json.Unmarshal(data, &n); err != nil {
		var s string
		if json.Unmarshal(data, &s) != nil {
			return fmt.Errorf("port %s is neither a number nor a string", data)
		}
		if n, err = strconv.Atoi(strings.TrimSpace(s)); err != nil {
			return fmt.Errorf("named port %q cannot be resolved outside the kubelet; give its number", s)
		}
	}
	if n < 1 || n > 65535 {
		return fmt.Errorf("port %d out of range 1-65535", n)
	}
	*p = Port(n)
	return nil
}

// ParseHandler decodes and checks one hook annotation. Unknown fields are
// errors: a misspelt key would otherwise silently disable the hook.
func ParseHandler(data string) (*Handler, error) {
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	var h Handler
	if err := dec.Decode(&h); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the handler")
	}
	if err := h.validate(); err != nil {
		return nil, err
	}
	return &h, nil
}

func (h *Handler) validate() error {
	set := 0
	for _, on := range []bool{h.Exec != nil, h.HTTPGet != nil, h.TCPSocket != nil, h.Sleep != nil} {
		if on {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("exactly one of exec, httpGet, tcpSocket, sleep must be set, found %d", set)
	}
	switch {
	case h.Exec != nil:
		if len(h.Exec.Command) == 0 || h.Exec.Command[0] == "" {
			return fmt.Errorf("exec needs a command")
		}
	case h.HTTPGet != nil:
		if h.HTTPGet.Port == 0 {
			return fmt.Errorf("httpGet needs a port")
		}
		switch strings.ToUpper(h.HTTPGet.Scheme) {
		case "", "HTTP", "HTTPS":
		default:
			return fmt.Errorf("httpGet scheme %q is not HTTP or HTTPS", h.HTTPGet.Scheme)
		}
		for _, hd := range h.HTTPGet.HTTPHeaders {
			if hd.Name == "" || strings.ContainsAny(hd.Name, " \t\r\n:") || strings.ContainsAny(hd.Value, "\r\n") {
				return fmt.Errorf("httpGet header %q is not a valid header", hd.Name)
			}
		}
	case h.TCPSocket != nil:
		if h.TCPSocket.Port == 0 {
			return fmt.Errorf("tcpSocket needs a port")
		}
	case h.Sleep != nil:
		if h.Sleep.Seconds < 0 {
			return fmt.Errorf("sleep seconds %d must not be negative", h.Sleep.Seconds)
		}
	}
	return nil
}

// String names the handler for logs and messages.
func (h *Handler) String() string {
	switch {
	case h == nil:
		return "none"
	case h.Exec != nil:
		return fmt.Sprintf("exec %q", h.Exec.Command)
	case h.HTTPGet != nil:
		return fmt.Sprintf("httpGet %s port %d", h.HTTPGet.Path, h.HTTPGet.Port)
	case h.TCPSocket != nil:
		return fmt.Sprintf("tcpSocket port %d", h.TCPSocket.Port)
	case h.Sleep != nil:
		return fmt.Sprintf("sleep %ds", h.Sleep.Seconds)
	}
	return "empty"
}

// Hooks is what a container declared through crishim's annotations.
type Hooks struct {
	PostStart *Handler
	PreStop   *Handler
	// Grace is the termination grace period, DefaultHookGrace when the
	// container has hooks but names none; GraceSet says it was named.
	Grace    time.Duration
	GraceSet bool
}

// ParseHooks reads the hook annotations; any malformed one is an
// errdefs.ErrInvalidArgument, so that CreateContainer refuses it.
func ParseHooks(annotations map[string]string) (Hooks, error) {
	var hk Hooks
	for _, a := range []struct {
		key string
		dst **Handler
	}{{AnnotationPostStart, &hk.PostStart}, {AnnotationPreStop, &hk.PreStop}} {
		v, ok := annotations[a.key]
		if !ok {
			continue
		}
		h, err := ParseHandler(v)
		if err != nil {
			return Hooks{}, fmt.Errorf("annotation %s: %v: %w", a.key, err, errdefs.ErrInvalidArgument)
		}
		*a.dst = h
	}
	if v, ok := annotations[AnnotationTerminationGrace]; ok {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 || n > maxGraceSeconds {
			return Hooks{}, fmt.Errorf("annotation %s: %q is not a number of seconds in 0-%d: %w",
				AnnotationTerminationGrace, v, maxGraceSeconds, errdefs.ErrInvalidArgument)
		}
		hk.Grace, hk.GraceSet = time.Duration(n)*time.Second, true
	} else if hk.PostStart != nil || hk.PreStop != nil {
		hk.Grace = DefaultHookGrace
	}
	return hk, nil
}

// maxGraceSeconds keeps the duration arithmetic far from overflow (a year).
const maxGraceSeconds = 365 * 24 * 3600

// boundedOutput keeps hook output short enough for a log line and a
// container status message.
func boundedOutput(parts ...[]byte) string {
	const max = 1024
	out := bytes.TrimSpace(bytes.Join(parts, []byte("\n")))
	if len(out) > max {
		return string(out[:max]) + fmt.Sprintf("... (%d bytes)", len(out))
	}
	return string(out)
}
