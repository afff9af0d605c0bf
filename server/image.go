package server

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageService is crishim's CRI ImageService; it shares the Server's deps.
type imageService struct {
	runtime.UnimplementedImageServiceServer
	s *Server
}

// PullImage pulls an image through the configured registry hosts.
func (is *imageService) PullImage(ctx context.Context, req *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	if req.GetImage().GetImage() == "" {
		return nil, invalid("image reference is required")
	}
	ref, err := is.s.images.Pull(ctx, req.GetImage().GetImage(), req.GetAuth(), req.GetSandboxConfig())
	if err != nil {
		return nil, err
	}
	return &runtime.PullImageResponse{ImageRef: ref}, nil
}

// ListImages lists local images.
func (is *imageService) ListImages(ctx context.Context, req *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	images, err := is.s.images.List(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtime.ListImagesResponse{Images: images}, nil
}

// ImageStatus reports one image; an absent image is a nil image, not an error.
func (is *imageService) ImageStatus(ctx context.Context, req *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	if req.GetImage().GetImage() == "" {
		return nil, invalid("image reference is required")
	}
	img, info, err := is.s.images.Status(ctx, req.GetImage(), req.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &runtime.ImageStatusResponse{Image: img, Info: info}, nil
}

// RemoveImage removes an image; removing an absent image succeeds.
func (is *imageService) RemoveImage(ctx context.Context, req *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	if req.GetImage().GetImage() == "" {
		return nil, invalid("image reference is required")
	}
	if err := is.s.images.Remove(ctx, req.GetImage()); err != nil {
		return nil, err
	}
	return &runtime.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the filesystem that holds images and container layers.
func (is *imageService) ImageFsInfo(ctx context.Context, req *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	usage, err := is.s.images.FsInfo(ctx)
	if err != nil {
		return nil, err
	}
	return &runtime.ImageFsInfoResponse{ImageFilesystems: usage, ContainerFilesystems: usage}, nil
}
