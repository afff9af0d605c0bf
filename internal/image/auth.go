package image

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/remotes/docker"
	dockerconfig "github.com/containerd/containerd/remotes/docker/config"
	"github.com/distribution/reference"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// credential is a CRI AuthConfig reduced to what a registry accepts. For
// the docker authorizer an empty user with a secret means an OAuth refresh
// (identity) token; token is a bearer token sent as is.
type credential struct {
	user   string
	secret string
	token  string
}

func (c credential) empty() bool { return c.user == "" && c.secret == "" && c.token == "" }

// parseAuth maps a CRI AuthConfig to a credential. The most specific form
// wins: a registry token needs no exchange, an identity token is what a
// credential helper hands out in place of a password.
func parseAuth(a *runtime.AuthConfig) (credential, error) {
	if a == nil {
		return credential{}, nil
	}
	switch {
	case a.RegistryToken != "":
		return credential{token: a.RegistryToken}, nil
	case a.IdentityToken != "":
		return credential{secret: a.IdentityToken}, nil
	case a.Username != "":
		return credential{user: a.Username, secret: a.Password}, nil
	case a.Auth != "":
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return credential{}, fmt.Errorf("auth is not base64: %w", errdefs.ErrInvalidArgument)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok || user == "" {
			return credential{}, fmt.Errorf(`auth must encode "user:password": %w`, errdefs.ErrInvalidArgument)
		}
		return credential{user: user, secret: pass}, nil
	}
	return credential{}, nil
}

// dockerHubHosts are the names Docker Hub is known by: the reference
// domain, the registry endpoint containerd talks to and the index address
// docker config files use.
var dockerHubHosts = []string{"docker.io", "registry-1.docker.io", "index.docker.io"}

// credentialHosts is where a pull's credentials may be sent: the registry
// named by server_address when the client gave one, else the image's own
// registry. Mirrors configured in hosts.toml are other parties and do not
// get them.
func credentialHosts(serverAddress string, named reference.Named) map[string]bool {
	host := serverHost(serverAddress)
	if host == "" {
		host = reference.Domain(named)
	}
	hosts := map[string]bool{host: true}
	for _, h := range dockerHubHosts {
		if h == host {
			for _, h := range dockerHubHosts {
				hosts[h] = true
			}
			break
		}
	}
	return hosts
}

// serverHost extracts host[:port] from a server_address, which clients
// send as a bare host, a URL, or docker's "https://index.docker.io/v1/".
func serverHost(addr string) string {
	addr = strings.TrimSpace(addr)
	if i := strings.Index(addr, "://"); i >= 0 {
		addr = addr[i+3:]
	}
	addr, _, _ = strings.Cut(addr, "/")
	return strings.ToLower(addr)
}

// registryHosts resolves the registry endpoints for named from the hosts.toml
// tree and attaches cred to the hosts it is meant for.
func registryHosts(ctx context.Context, configDir string, named reference.Named, serverAddress string, cred credential) docker.RegistryHosts {
	opts := dockerconfig.HostOptions{}
	if configDir != "" {
		opts.HostDir = dockerconfig.HostDirFromRoot(configDir)
	}
	allowed := credentialHosts(serverAddress, named)
	if !cred.empty() && cred.token == "" {
		opts.Credentials = func(host string) (string, string, error) {
			if allowed[host] {
				return cred.user, cred.secret, nil
			}
			return "", "", nil
		}
	}
	hosts := dockerconfig.ConfigureHosts(ctx, opts)
	if cred.token == "" {
		return hosts
	}
	return func(host string) ([]docker.RegistryHost, error) {
		rhosts, err := hosts(host)
		if err != nil {
			return nil, err
		}
		for i := range rhosts {
			if allowed[rhosts[i].Host] {
				rhosts[i].Authorizer = bearerAuthorizer(cred.token)
			}
		}
		return rhosts, nil
	}
}

// bearerAuthorizer presents a registry token the client already holds;
// there is nothing to negotiate, so a rejection is final.
type bearerAuthorizer string

func (t bearerAuthorizer) Authorize(_ context.Context, req *http.Request) error {
	req.Header.Set("Authorization", "Bearer "+string(t))
	return nil
}

func (t bearerAuthorizer) AddResponses(context.Context, []*http.Response) error {
	return fmt.Errorf("registry token rejected: %w", docker.ErrInvalidAuthorization)
}
