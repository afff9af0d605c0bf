package server

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus is the one place where domain errors become gRPC statuses.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	mapped := errdefs.ToGRPC(err)
	if _, ok := status.FromError(mapped); ok {
		return mapped
	}
	return status.Error(codes.Unknown, err.Error())
}

// invalid builds an InvalidArgument status for request validation.
func invalid(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

// rpcName turns "/runtime.v1.RuntimeService/RunPodSandbox" into "RunPodSandbox".
func rpcName(full string) string {
	return full[strings.LastIndex(full, "/")+1:]
}

// recovered turns a handler panic into an Internal status so that one bad
// request never takes the node's runtime down.
func recovered(rpc string, p any) error {
	buf := make([]byte, 16<<10)
	buf = buf[:goruntime.Stack(buf, false)]
	logrus.WithFields(logrus.Fields{"rpc": rpc, "panic": p}).Errorf("handler panicked\n%s", buf)
	return status.Errorf(codes.Internal, "%s: internal error: %v", rpc, p)
}

// idFields names the pod and container an RPC is about, from its request
// or, for the RPCs that create them, its response, so that every line
// about a pod or container carries its IDs.
func idFields(msgs ...any) logrus.Fields {
	f := logrus.Fields{}
	for _, m := range msgs {
		if p, ok := m.(interface{ GetPodSandboxId() string }); ok && p.GetPodSandboxId() != "" {
			f["pod"] = p.GetPodSandboxId()
		}
		if c, ok := m.(interface{ GetContainerId() string }); ok && c.GetContainerId() != "" {
			f["container"] = c.GetContainerId()
		}
	}
	return f
}

// logResult logs how an RPC ended: at debug level when it succeeded or
// failed because of its request, else as a warning. The kubelet polls
// lists and statuses many times a minute; at info level their lines are
// not built at all.
func logResult(rpc string, start time.Time, err error, msgs ...any) {
	level := logrus.DebugLevel
	if err != nil {
		switch status.Code(err) {
		case codes.NotFound, codes.InvalidArgument, codes.AlreadyExists, codes.Unimplemented, codes.Canceled:
		default:
			level = logrus.WarnLevel
		}
	}
	if !logrus.IsLevelEnabled(level) {
		return
	}
	entry := logrus.WithFields(idFields(msgs...)).WithFields(logrus.Fields{"rpc": rpc, "duration": time.Since(start).String()})
	if err == nil {
		entry.Log(level, "done")
		return
	}
	entry.WithError(err).Log(level, "failed")
}

func unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	rpc := rpcName(info.FullMethod)
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, recovered(rpc, p)
		}
		logResult(rpc, start, err, req, resp)
	}()
	resp, err = handler(ctx, req)
	return resp, toStatus(err)
}

func streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	rpc := rpcName(info.FullMethod)
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			err = recovered(rpc, p)
		}
		logResult(rpc, start, err)
	}()
	return toStatus(handler(srv, ss))
}
