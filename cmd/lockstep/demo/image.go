package demo

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// BinPath is where the lockstep binary sits in the demo images, and
// ContainerPort is where demo-serve listens inside them.
const (
	BinPath       = "/lockstep"
	ContainerPort = 8080
)

// LabelDemo marks every demo image with the image prefix it was made under.
const LabelDemo = "lockstep.demo"

// imageSpecs are the images of the story: web at v1 and v2, and the
// worker. Only the VERSION baked into each differs; they share one layer.
var imageSpecs = []struct{ repo, tag string }{
	{"web", "v1"},
	{"web", "v2"},
	{"worker", "v1"},
}

// Images are the demo images, built but not yet loaded.
type Images struct {
	Refs []string // "<prefix>/web:v1", ... in a stable order
	// Interpreter is the dynamic loader packed beside the binary, "" when
	// the binary is static. Libraries are the host paths of the shared
	// libraries packed with it.
	Interpreter string
	Libraries   []string

	images map[name.Reference]v1.Image
}

// BuildImages packs the binary at bin (the running lockstep) into the demo
// images, named under prefix. A dynamically linked binary (`go run` with
// cgo on links against libc) is packed with its loader and the shared
// libraries it needs, at the paths it looks for them.
func BuildImages(bin, prefix string) (*Images, error) {
	interp, libs, err := RuntimeFiles(bin)
	if err != nil {
		return nil, err
	}
	files := []layerFile{{Path: BinPath, Source: bin}}
	var libDirs []string
	if interp != "" {
		files = append(files, layerFile{Path: interp, Source: interp})
		for _, l := range libs {
			files = append(files, layerFile{Path: l, Source: l})
			if d := filepath.Dir(l); !slices.Contains(libDirs, d) {
				libDirs = append(libDirs, d)
			}
		}
	}
	layerData, err := buildLayer(files)
	if err != nil {
		return nil, fmt.Errorf("pack %s into the demo images: %w", bin, err)
	}
	// Uncompressed: the layer never leaves this host, and gzip would cost
	// more time than the whole deploy (many times more in a -race build).
	layer := static.NewLayer(layerData, types.DockerUncompressedLayer)
	base, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("pack %s into the demo images: %w", bin, err)
	}

	out := &Images{Interpreter: interp, Libraries: libs, images: map[name.Reference]v1.Image{}}
	byVersion := map[string]v1.Image{}
	for _, s := range imageSpecs {
		ref := prefix + "/" + s.repo + ":" + s.tag
		tag, err := name.NewTag(ref)
		if err != nil {
			return nil, fmt.Errorf("demo image name %s: %w", ref, err)
		}
		img := byVersion[s.tag]
		if img == nil {
			img, err = versionImage(base, s.tag, prefix, libDirs)
			if err != nil {
				return nil, fmt.Errorf("demo image %s: %w", ref, err)
			}
			byVersion[s.tag] = img
		}
		out.Refs = append(out.Refs, ref)
		out.images[tag] = img
	}
	return out, nil
}

// versionImage is base with the config demo-serve runs under: VERSION
// baked in, so an image tag bump is all a release changes.
func versionImage(base v1.Image, version, prefix string, libDirs []string) (v1.Image, error) {
	cf, err := base.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Config.Entrypoint = []string{BinPath, "demo-serve"}
	cf.Config.Env = []string{"VERSION=" + version}
	if len(libDirs) > 0 {
		// The image has no ld.so.cache; name the directories outright rather
		// than rely on the loader's built-in defaults matching this host's.
		cf.Config.Env = append(cf.Config.Env, "LD_LIBRARY_PATH="+strings.Join(libDirs, ":"))
	}
	cf.Config.ExposedPorts = map[string]struct{}{fmt.Sprintf("%d/tcp", ContainerPort): {}}
	cf.Config.Labels = map[string]string{LabelDemo: prefix}
	cf.Created = v1.Time{Time: time.Now().UTC()}
	return mutate.ConfigFile(base, cf)
}

// ImageLoader is the one engine call Load needs.
type ImageLoader interface {
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (client.ImageLoadResult, error)
}

// Load streams the images into the engine as one `docker load` archive:
// no registry is involved, and the shared layer is sent once.
func (im *Images) Load(ctx context.Context, eng ImageLoader) error {
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := tarball.MultiRefWrite(im.images, pw)
		pw.CloseWithError(err)
		written <- err
	}()
	err := readLoad(eng.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true)))
	// Unblock the writer if the engine stopped reading early.
	pr.CloseWithError(errors.New("image load finished"))
	if werr := <-written; werr != nil && err == nil {
		err = fmt.Errorf("write the image archive: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("load the demo images %s into the Docker engine: %w", strings.Join(im.Refs, ", "), err)
	}
	return nil
}

// readLoad reads the engine's answer to a load to the end: like a pull, a
// load reports failure inside the stream with HTTP 200.
func readLoad(resp client.ImageLoadResult, err error) error {
	if err != nil {
		return err
	}
	defer resp.Close()
	dec := json.NewDecoder(resp)
	for {
		var msg jsonstream.Message
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read the engine's answer: %w", err)
		}
		if msg.Error != nil {
			return errors.New(msg.Error.Message)
		}
	}
}

// layerFile is one regular file of the image: Path in the image, read from
// Source on this host.
type layerFile struct {
	Path   string
	Source string
}

// buildLayer writes the files (and their parent directories) as a tar.
// Headers carry no owners and a fixed time: only content matters.
func buildLayer(files []layerFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)

	dirs := map[string]bool{}
	var dirList []string
	for _, f := range files {
		for d := path.Dir(f.Path); d != "/" && d != "."; d = path.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				dirList = append(dirList, d)
			}
		}
	}
	slices.Sort(dirList) // parents sort before their children
	if err := tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch}); err != nil {
		return nil, err
	}
	for _, d := range dirList {
		if d == "/tmp" {
			continue
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(d, "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f.Path] {
			continue
		}
		seen[f.Path] = true
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(f.Path, "/"), Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// RuntimeFiles reads the ELF headers of bin and returns what it needs to
// run besides itself: its program interpreter (the dynamic loader; "" for
// a static binary) and the host paths of the shared libraries it needs,
// directly or through other libraries. Libraries are looked up in the
// standard library directories, and only one built for bin's class and
// machine is taken (a 64-bit binary never gets a 32-bit libc).
func RuntimeFiles(bin string) (interp string, libs []string, err error) {
	f, err := elf.Open(bin)
	if err != nil {
		return "", nil, fmt.Errorf("the demo packs this lockstep binary into a Linux image, but %s is not a Linux executable it can read (%w); run the demo with lockstep built for Linux", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			return "", nil, fmt.Errorf("read the program interpreter of %s: %w", bin, err)
		}
		interp = strings.TrimRight(string(data), "\x00")
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("read the shared libraries %s needs: %w", bin, err)
	}
	if interp == "" {
		if len(needed) > 0 {
			return "", nil, fmt.Errorf("%s needs shared libraries (%s) but names no program interpreter; build lockstep statically (CGO_ENABLED=0 go build ./cmd/lockstep) and run the demo again", bin, strings.Join(needed, ", "))
		}
		return "", nil, nil
	}

	dirs := libraryDirs(interp)
	found := map[string]bool{path.Base(interp): true}
	for len(needed) > 0 {
		lib := needed[0]
		needed = needed[1:]
		if found[lib] {
			continue
		}
		found[lib] = true
		p, more, err := findLibrary(lib, dirs, f.Class, f.Machine)
		if err != nil {
			return "", nil, fmt.Errorf("%w; build lockstep statically (CGO_ENABLED=0 go build ./cmd/lockstep) and run the demo again", err)
		}
		libs = append(libs, p)
		needed = append(needed, more...)
	}
	return interp, libs, nil
}

// libraryDirs are the directories a glibc or musl loader searches by
// default, multiarch ones first, then the interpreter's own.
func libraryDirs(interp string) []string {
	var dirs []string
	if t := multiarch[runtime.GOARCH]; t != "" {
		dirs = append(dirs, "/lib/"+t, "/usr/lib/"+t)
	}
	dirs = append(dirs, "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib")
	if d := path.Dir(interp); !slices.Contains(dirs, d) {
		dirs = append(dirs, d)
	}
	return dirs
}

// multiarch is Debian's library directory triplet per GOARCH.
var multiarch = map[string]string{
	"amd64":   "x86_64-linux-gnu",
	"arm64":   "aarch64-linux-gnu",
	"arm":     "arm-linux-gnueabihf",
	"386":     "i386-linux-gnu",
	"ppc64le": "powerpc64le-linux-gnu",
	"s390x":   "s390x-linux-gnu",
	"riscv64": "riscv64-linux-gnu",
}

// findLibrary returns the first file called name in dirs that is an ELF
// object of the given class and machine, and the libraries it needs.
func findLibrary(name string, dirs []string, class elf.Class, machine elf.Machine) (string, []string, error) {
	if strings.Contains(name, "/") {
		dirs = []string{path.Dir(name)}
		name = path.Base(name)
	}
	for _, d := range dirs {
		p := path.Join(d, name)
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		ok := f.Class == class && f.Machine == machine
		var needed []string
		if ok {
			needed, err = f.ImportedLibraries()
		}
		f.Close()
		if !ok {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("read the shared libraries %s needs: %w", p, err)
		}
		return p, needed, nil
	}
	return "", nil, fmt.Errorf("the lockstep binary needs the shared library %s, found in none of %s", name, strings.Join(dirs, ", "))
}
