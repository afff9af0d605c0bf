//go:build linux

package stack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Registry is a private OCI registry (Debian's docker-registry, distribution
// v2) on a free loopback port with its storage under Dir.
type Registry struct {
	Dir string
	// Host is host:port, the registry's name in image references.
	Host    string
	LogPath string
	d       *daemon
	http    *http.Client
}

// StartRegistry starts docker-registry and waits until /v2/ answers.
func StartRegistry(dir, logPath string) (*Registry, error) {
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	// A port found free can be taken before the registry binds it; retry.
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		r, err := startRegistryOn(dir, logPath, fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startRegistryOn(dir, logPath, addr string) (*Registry, error) {
	conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), addr)
	confPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	d, err := startDaemon("docker-registry", logPath, "/usr/bin/docker-registry", "serve", confPath)
	if err != nil {
		return nil, err
	}
	r := &Registry{Dir: dir, Host: addr, LogPath: logPath, d: d, http: &http.Client{Timeout: 30 * time.Second}}
	err = poll(20*time.Second, 50*time.Millisecond, "registry to answer on "+addr, func() (bool, error) {
		if err := d.exited(); err != nil {
			return false, err
		}
		resp, err := r.http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("GET /v2/: %s", resp.Status)
	})
	if err != nil {
		_ = d.stop(5 * time.Second)
		return nil, err
	}
	return r, nil
}

// Stop stops the registry.
func (r *Registry) Stop() error { return r.d.stop(5 * time.Second) }

// FreePort returns a TCP port nothing listens on at the moment.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Push uploads img's blobs and then its manifest as repo:tag, the way the
// OCI distribution spec describes: monolithic blob uploads (POST for a
// session, PUT with the digest), skipping blobs the registry already has.
func (r *Registry) Push(ctx context.Context, repo, tag string, img *Image) error {
	for _, b := range img.Blobs() {
		if err := r.pushBlob(ctx, repo, b); err != nil {
			return err
		}
	}
	return r.pushManifest(ctx, repo, tag, img.Manifest)
}

func (r *Registry) pushBlob(ctx context.Context, repo string, b Blob) error {
	blobURL := fmt.Sprintf("http://%s/v2/%s/blobs/%s", r.Host, repo, b.Desc.Digest)
	resp, err := r.do(ctx, http.MethodHead, blobURL, nil, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}

	resp, err = r.do(ctx, http.MethodPost, fmt.Sprintf("http://%s/v2/%s/blobs/uploads/", r.Host, repo), nil, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("start upload of %s to %s: %s", b.Desc.Digest, repo, resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("upload of %s: no Location: %w", b.Desc.Digest, err)
	}
	q := loc.Query()
	q.Set("digest", b.Desc.Digest.String())
	loc.RawQuery = q.Encode()
	resp, err = r.do(ctx, http.MethodPut, loc.String(), b.Data, "application/octet-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("upload %s to %s: %s: %s", b.Desc.Digest, repo, resp.Status, body)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != b.Desc.Digest.String() {
		return fmt.Errorf("upload %s to %s: registry stored it as %s", b.Desc.Digest, repo, got)
	}
	return nil
}

func (r *Registry) pushManifest(ctx context.Context, repo, tag string, m Blob) error {
	resp, err := r.do(ctx, http.MethodPut, fmt.Sprintf("http://%s/v2/%s/manifests/%s", r.Host, repo, url.PathEscape(tag)), m.Data, m.Desc.MediaType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("put manifest %s:%s: %s: %s", repo, tag, resp.Status, body)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != m.Desc.Digest.String() {
		return fmt.Errorf("put manifest %s:%s: registry digest %q, want %s", repo, tag, got, m.Desc.Digest)
	}
	return nil
}

// ManifestDigest asks the registry for the digest behind repo:tag.
func (r *Registry) ManifestDigest(ctx context.Context, repo, tag string) (digest.Digest, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, fmt.Sprintf("http://%s/v2/%s/manifests/%s", r.Host, repo, tag), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", strings.Join([]string{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex}, ", "))
	resp, err := r.http.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HEAD manifest %s:%s: %s", repo, tag, resp.Status)
	}
	return digest.Parse(resp.Header.Get("Docker-Content-Digest"))
}

func (r *Registry) do(ctx context.Context, method, u string, body []byte, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(len(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	return resp, nil
}
