package image

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestParseAuth(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name string
		in   *runtime.AuthConfig
		want credential
	}{
		{"nil", nil, credential{}},
		{"empty", &runtime.AuthConfig{}, credential{}},
		{"user", &runtime.AuthConfig{Username: "u", Password: "p"}, credential{user: "u", secret: "p"}},
		{"auth", &runtime.AuthConfig{Auth: b64("u:p:with:colons")}, credential{user: "u", secret: "p:with:colons"}},
		{"identity", &runtime.AuthConfig{Username: "<token>", IdentityToken: "id"}, credential{secret: "id"}},
		{"registry token", &runtime.AuthConfig{Username: "u", Password: "p", RegistryToken: "tok"}, credential{token: "tok"}},
		{"user beats auth", &runtime.AuthConfig{Username: "u", Password: "p", Auth: b64("x:y")}, credential{user: "u", secret: "p"}},
	} {
		got, err := parseAuth(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%s: parseAuth = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	for _, bad := range []string{"not base64!", b64("nocolon"), b64(":nouser")} {
		if _, err := parseAuth(&runtime.AuthConfig{Auth: bad}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("parseAuth(auth %q) error = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestCredentialHosts(t *testing.T) {
	hub := []string{"docker.io", "registry-1.docker.io", "index.docker.io"}
	for _, tc := range []struct {
		server, image string
		want          []string
	}{
		{"", "busybox", hub},
		{"https://index.docker.io/v1/", "quay.io/x/y", hub},
		{"", "registry.k8s.io/pause:3.10", []string{"registry.k8s.io"}},
		{"myreg.example:5000", "registry.k8s.io/pause", []string{"myreg.example:5000"}},
		{"http://MyReg.example:5000/path", "busybox", []string{"myreg.example:5000"}},
	} {
		named, err := NormalizeRef(tc.image)
		if err != nil {
			t.Fatal(err)
		}
		got := credentialHosts(tc.server, named)
		if len(got) != len(tc.want) {
			t.Errorf("credentialHosts(%q, %s) = %v, want %v", tc.server, tc.image, got, tc.want)
			continue
		}
		for _, h := range tc.want {
			if !got[h] {
				t.Errorf("credentialHosts(%q, %s) = %v, want %v", tc.server, tc.image, got, tc.want)
			}
		}
	}
}

// fakeRegistry serves one manifest and records the Authorization headers it
// receives. accept says which header values are let through; a realm
// handler at /token exchanges an identity (refresh) token for "access".
type fakeRegistry struct {
	*httptest.Server
	challenge string // WWW-Authenticate for unauthorised requests
	accept    map[string]bool
	mu        sync.Mutex
	seen      []string
}

func newFakeRegistry(t *testing.T, challenge string, accept ...string) *fakeRegistry {
	r := &fakeRegistry{challenge: challenge, accept: map[string]bool{}}
	for _, a := range accept {
		r.accept[a] = true
	}
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/token" {
			_ = req.ParseForm()
			if req.Form.Get("grant_type") == "refresh_token" && req.Form.Get("refresh_token") == "identity" {
				fmt.Fprint(w, `{"access_token":"access","expires_in":300}`)
				return
			}
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.mu.Lock()
		r.seen = append(r.seen, req.Header.Get("Authorization"))
		r.mu.Unlock()
		if !r.accept[req.Header.Get("Authorization")] {
			w.Header().Set("WWW-Authenticate", strings.ReplaceAll(r.challenge, "REALM", "http://"+req.Host+"/token"))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(manifest).String())
		w.Header().Set("Content-Length", fmt.Sprint(len(manifest)))
		if req.Method == http.MethodGet {
			_, _ = w.Write(manifest)
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *fakeRegistry) host() string {
	u, _ := url.Parse(r.URL)
	return u.Host
}

// sawCredentials reports whether any request carried an Authorization header.
func (r *fakeRegistry) sawCredentials() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.seen {
		if s != "" {
			return true
		}
	}
	return false
}

func resolve(t *testing.T, configDir, ref string, auth *runtime.AuthConfig) error {
	t.Helper()
	named, err := NormalizeRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := parseAuth(auth)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: registryHosts(ctx, configDir, named, auth.GetServerAddress(), cred),
	})
	_, _, err = resolver.Resolve(ctx, named.String())
	return err
}

func TestRegistryCredentials(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:pass"))

	t.Run("password reaches the image's registry", func(t *testing.T) {
		reg := newFakeRegistry(t, `Basic realm="test"`, basic)
		if err := resolve(t, "", reg.host()+"/app:1", &runtime.AuthConfig{Username: "user", Password: "pass"}); err != nil {
			t.Fatalf("resolve with credentials: %v", err)
		}
	})
	t.Run("auth field", func(t *testing.T) {
		reg := newFakeRegistry(t, `Basic realm="test"`, basic)
		auth := &runtime.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte("user:pass")), ServerAddress: "http://" + reg.host()}
		if err := resolve(t, "", reg.host()+"/app:1", auth); err != nil {
			t.Fatalf("resolve with auth: %v", err)
		}
	})
	t.Run("withheld from another server_address", func(t *testing.T) {
		reg := newFakeRegistry(t, `Basic realm="test"`, basic)
		auth := &runtime.AuthConfig{Username: "user", Password: "pass", ServerAddress: "elsewhere.example"}
		if err := resolve(t, "", reg.host()+"/app:1", auth); err == nil {
			t.Fatal("resolve succeeded without credentials")
		}
		if reg.sawCredentials() {
			t.Fatal("credentials for elsewhere.example were sent to the image's registry")
		}
	})
	t.Run("registry token", func(t *testing.T) {
		reg := newFakeRegistry(t, `Bearer realm="REALM",service="test"`, "Bearer tok")
		if err := resolve(t, "", reg.host()+"/app:1", &runtime.AuthConfig{RegistryToken: "tok"}); err != nil {
			t.Fatalf("resolve with registry token: %v", err)
		}
	})
	t.Run("identity token", func(t *testing.T) {
		reg := newFakeRegistry(t, `Bearer realm="REALM",service="test"`, "Bearer access")
		if err := resolve(t, "", reg.host()+"/app:1", &runtime.AuthConfig{IdentityToken: "identity"}); err != nil {
			t.Fatalf("resolve with identity token: %v", err)
		}
	})
	t.Run("mirror from hosts.toml", func(t *testing.T) {
		mirror := newFakeRegistry(t, `Basic realm="test"`, "", basic)
		dir := t.TempDir()
		writeHosts(t, dir, "registry.invalid", "http://"+mirror.host())
		if err := resolve(t, dir, "registry.invalid/app:1", nil); err != nil {
			t.Fatalf("resolve through mirror: %v", err)
		}
	})
	t.Run("mirror does not get the registry's credentials", func(t *testing.T) {
		mirror := newFakeRegistry(t, `Basic realm="test"`, basic)
		dir := t.TempDir()
		writeHosts(t, dir, "registry.invalid", "http://"+mirror.host())
		_ = resolve(t, dir, "registry.invalid/app:1", &runtime.AuthConfig{Username: "user", Password: "pass"})
		if mirror.sawCredentials() {
			t.Fatal("credentials for registry.invalid were sent to its mirror")
		}
		auth := &runtime.AuthConfig{Username: "user", Password: "pass", ServerAddress: mirror.host()}
		if err := resolve(t, dir, "registry.invalid/app:1", auth); err != nil {
			t.Fatalf("resolve through mirror named by server_address: %v", err)
		}
	})
}

func writeHosts(t *testing.T, root, registry, mirror string) {
	t.Helper()
	dir := filepath.Join(root, registry)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	toml := fmt.Sprintf("server = \"https://%s\"\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", registry, mirror)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
}
