package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Hash formats. The config-hash, spec-hash and lockstep.hash labels hold
// bare lowercase hex sha256 (the form compose uses for config-hash, and
// short enough for `docker ps` output); File.Digest holds "sha256:<hex>",
// the form of a content digest.

// perCommitLabels vary with the revision, the release directory or the
// lockstep version without the service changing; they are left out of
// SpecHash so an unchanged service at a new commit keeps its hash.
var perCommitLabels = []string{
	LabelCommit, LabelWorkingDir, LabelConfigFiles, LabelVersion,
	LabelConfigHash, LabelSpecHash, LabelHash, LabelContainerNumber,
}

// specHash is lockstep's own hash of a service (SpecHash); it is what
// lockstep wrote as com.docker.compose.config-hash before that label held
// Compose's value, so it must keep its value for Service.Hash to stay the
// same across the upgrade. It hashes the service's create configs as canonical JSON
// (encoding/json sorts map keys), without the per-commit labels and with
// every path under the release dir rewritten relative to it. The image
// reference is left out too: it is compared on its own, so a release that
// only bumps a tag is explained as "image a -> b" and nothing else.
func specHash(svc *Service, releaseDir string) string {
	cfg, host, nets := ContainerCreate(svc, 0)
	cfg.Labels = withoutKeys(cfg.Labels, perCommitLabels...)
	cfg.Image = ""
	for i, b := range host.Binds {
		host.Binds[i] = releaseRelative(b, releaseDir)
	}
	for i := range host.Mounts {
		host.Mounts[i].Source = releaseRelative(host.Mounts[i].Source, releaseDir)
	}
	// Replicas are not part of it: scaling adds or removes containers, it
	// does not recreate the ones that run (compose's hash excludes it too).
	return hashJSON(struct {
		Config     any
		Host       any
		Networking any
	}{cfg, host, nets})
}

// releaseRelative rewrites a path (or a "path:target:mode" bind) that
// starts with releaseDir to "./rest".
func releaseRelative(s, releaseDir string) string {
	if s == releaseDir || strings.HasPrefix(s, releaseDir+":") {
		return "." + s[len(releaseDir):]
	}
	if strings.HasPrefix(s, releaseDir+"/") {
		return "./" + s[len(releaseDir)+1:]
	}
	return s
}

// serviceHash combines the spec hash, the image reference and the content
// digests of the repository files the service uses: a changed nginx.conf
// changes nginx's hash and nothing else's.
func serviceHash(specHash, image string, files []File) string {
	h := sha256.New()
	io.WriteString(h, specHash+"\n")
	io.WriteString(h, "image="+image+"\n")
	for _, f := range files {
		fmt.Fprintf(h, "%s=%s\n", f.Path, f.Digest)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func hashJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain data types are hashed here; a marshal failure is a
		// programming error, not an input problem.
		panic(fmt.Sprintf("compose: hash: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// digest returns "sha256:<hex>" of a file's content, or of a directory's
// sorted entries: each entry's slash path, type, executable bit and
// content (a symlink's target; symlinks are not followed). Only the
// executable bit of the mode counts, as git tracks nothing else; the rest
// depends on the umask of whoever materialized the release.
func (c *converter) digest(p string) (string, error) {
	if d, ok := c.fileCache[p]; ok {
		return d, nil
	}
	d, err := digestPath(p)
	if err != nil {
		return "", err
	}
	c.fileCache[p] = d
	return d, nil
}

func digestPath(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if !st.IsDir() {
		if err := hashFile(h, p); err != nil {
			return "", err
		}
	} else {
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(p, path)
			info, err := d.Info()
			if err != nil {
				return err
			}
			kind := "f"
			switch {
			case d.IsDir():
				kind = "d"
			case d.Type()&fs.ModeSymlink != 0:
				kind = "l"
			case !d.Type().IsRegular():
				kind = "o"
			}
			exec := "-"
			if info.Mode().Perm()&0o111 != 0 && kind == "f" {
				exec = "x"
			}
			fmt.Fprintf(h, "%s %s%s ", filepath.ToSlash(rel), kind, exec)
			switch kind {
			case "f":
				fh := sha256.New()
				if err := hashFile(fh, path); err != nil {
					return err
				}
				fmt.Fprintf(h, "%x", fh.Sum(nil))
			case "l":
				target, err := os.Readlink(path)
				if err != nil {
					return err
				}
				io.WriteString(h, target)
			}
			io.WriteString(h, "\n")
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(h io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(h, f)
	return err
}
