//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crishim/crishim/integration/testenv"
)

// ControlPlane is etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler on loopback, with token authentication and AlwaysAllow
// authorization: the suite tests crishim under a cluster, not the
// cluster's security.
type ControlPlane struct {
	Dir       string
	APIServer string // https://127.0.0.1:port
	Token     string // the admin's
	kubeconfs map[string]string
	daemons   []*testenv.Daemon
	http      *http.Client
}

// StartControlPlane starts the control plane and waits until the API
// server is healthy and the default service account exists.
func StartControlPlane(t *testing.T) *ControlPlane {
	t.Helper()
	cp := &ControlPlane{Dir: filepath.Join(env.Dir, "controlplane"), kubeconfs: map[string]string{}}
	if err := os.MkdirAll(cp.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.stop(t) })
	port := func() int {
		p, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	start := func(name string, args ...string) *testenv.Daemon {
		d, err := testenv.StartDaemon(name, filepath.Join(env.LogDir, name+".log"), nil, append([]string{filepath.Join(k8sBin, name)}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		cp.daemons = append(cp.daemons, d)
		return d
	}
	file := func(name string, data []byte) string {
		p := filepath.Join(cp.Dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	etcdClient, etcdPeer := port(), port()
	etcd := start("etcd",
		"--name", "e2e", "--data-dir", filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-cluster", fmt.Sprintf("e2e=http://127.0.0.1:%d", etcdPeer),
		"--listen-metrics-urls", fmt.Sprintf("http://127.0.0.1:%d", port()),
		"--unsafe-no-fsync", "--log-level", "warn",
	)
	waitHTTP(t, etcd, fmt.Sprintf("http://127.0.0.1:%d/health", etcdClient), nil)

	ca, caKey, caPEM := newCA(t)
	certPEM, keyPEM := newServingCert(t, ca, caKey)
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	saPub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	caFile := file("ca.crt", caPEM)
	saKeyFile := file("sa.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}))
	saPubFile := file("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}))

	host, _ := os.Hostname()
	users := []struct{ name, user, groups string }{
		{"admin", "admin", "system:masters"},
		{"controller-manager", "system:kube-controller-manager", ""},
		{"scheduler", "system:kube-scheduler", ""},
		{"kubelet", "system:node:" + strings.ToLower(host), "system:nodes"},
	}
	var tokens bytes.Buffer
	apiPort := port()
	cp.APIServer = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	for _, u := range users {
		tok := randomToken(t)
		fmt.Fprintf(&tokens, "%s,%s,%s,\"%s\"\n", tok, u.user, u.user, u.groups)
		if u.name == "admin" {
			cp.Token = tok
		}
		cp.kubeconfs[u.name] = file(u.name+".kubeconfig", kubeconfig(cp.APIServer, caFile, tok))
	}
	apiserver := start("kube-apiserver",
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", fmt.Sprint(apiPort),
		"--tls-cert-file", file("apiserver.crt", certPEM), "--tls-private-key-file", file("apiserver.key", keyPEM),
		"--client-ca-file", caFile,
		"--token-auth-file", file("tokens.csv", tokens.Bytes()),
		"--authorization-mode", "AlwaysAllow",
		"--service-account-key-file", saPubFile, "--service-account-signing-key-file", saKeyFile,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-cluster-ip-range", "10.254.0.0/24",
		"--allow-privileged",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--kubelet-preferred-address-types", "InternalIP,Hostname",
		"--v", "1",
	)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	cp.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	waitHTTP(t, apiserver, cp.APIServer+"/readyz", cp)

	start("kube-controller-manager",
		"--kubeconfig", cp.kubeconfs["controller-manager"],
		"--service-account-private-key-file", saKeyFile, "--root-ca-file", caFile,
		"--use-service-account-credentials=false", "--leader-elect=false",
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(port()),
		"--controllers", "*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
		"--v", "1",
	)
	start("kube-scheduler",
		"--kubeconfig", cp.kubeconfs["scheduler"], "--leader-elect=false",
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(port()),
		"--v", "1",
	)
	// Pods are refused until the service account controller has made the
	// namespace's default account.
	if err := testenv.Poll(2*time.Minute, 250*time.Millisecond, "default service account", func() (bool, error) {
		if err := cp.exited(); err != nil {
			return false, err
		}
		_, err := cp.Get(context.Background(), "/api/v1/namespaces/default/serviceaccounts/default")
		return err == nil, err
	}); err != nil {
		t.Fatal(err)
	}
	return cp
}

func (cp *ControlPlane) exited() error {
	for _, d := range cp.daemons {
		if err := d.Exited(); err != nil {
			return err
		}
	}
	return nil
}

func (cp *ControlPlane) stop(t *testing.T) {
	if err := cp.exited(); err != nil {
		t.Errorf("control plane: %v", err)
	}
	for i := len(cp.daemons) - 1; i >= 0; i-- {
		if err := cp.daemons[i].Stop(20 * time.Second); err != nil {
			t.Errorf("stop: %v", err)
		}
	}
}

// Kubeconfig is the kubeconfig of one of the control plane's users.
func (cp *ControlPlane) Kubeconfig(user string) string { return cp.kubeconfs[user] }

// Get reads an API path as the admin.
func (cp *ControlPlane) Get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cp.APIServer+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+cp.Token)
	return fetch(cp.http, req)
}

// Kubectl runs kubectl as the admin and returns its output.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(k8sBin, "kubectl"), append([]string{"--kubeconfig", cp.kubeconfs["admin"]}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// MustKubectl is Kubectl that fails the test on error.
func (cp *ControlPlane) MustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := cp.Kubectl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Apply creates or updates objects given as JSON-able values.
func (cp *ControlPlane) Apply(t *testing.T, objs ...any) {
	t.Helper()
	for _, o := range objs {
		data, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(cp.Dir, "apply-"+randomToken(t)[:8]+".json")
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cp.MustKubectl(t, "apply", "-f", f)
	}
}

func waitHTTP(t *testing.T, d *testenv.Daemon, url string, cp *ControlPlane) {
	t.Helper()
	err := testenv.Poll(2*time.Minute, 200*time.Millisecond, url, func() (bool, error) {
		if err := d.Exited(); err != nil {
			return false, err
		}
		if cp != nil {
			_, err := cp.Get(context.Background(), strings.TrimPrefix(url, cp.APIServer))
			return err == nil, err
		}
		resp, err := http.Get(url)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("%s", resp.Status)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func randomToken(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

func kubeconfig(server, caFile, token string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: %q, certificate-authority: %q}
users:
- name: e2e
  user: {token: %q}
contexts:
- name: e2e
  context: {cluster: e2e, user: e2e}
current-context: e2e
`, server, caFile, token))
}

func newCA(t *testing.T) (*x509.Certificate, *rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "crishim-e2e-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func newServingCert(t *testing.T, ca *x509.Certificate, caKey *rsa.PrivateKey) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.254.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}
