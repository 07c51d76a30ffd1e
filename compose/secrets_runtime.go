package compose

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// secretWrite is one decrypted config or secret a service binds: Load
// decides its path, WriteSecrets puts it there.
type secretWrite struct {
	kind, name, digest string // kind is "config" or "secret"
	target             string // <RuntimeDir>/secrets/<project>/<kind>-<name>-<digest16>
	plain              []byte
}

// secretWrites are the files WriteSecrets writes for a Project, and the
// runtime dir Load named them under. A Project holds them behind a
// pointer, so a Project printed with %v shows an address and never the
// plaintext; the fields are unexported, so encoding/json never sees them.
type secretWrites struct {
	runtimeDir string
	files      []secretWrite // sorted by target
}

// secretPath returns the bind source of a decrypted config or secret,
// <RuntimeDir>/secrets/<project>/<kind>-<name>-<digest16>, writing
// nothing. The name is content-addressed, so an unchanged secret keeps its
// bind source (no recreate) and a changed one never overwrites the file a
// running container still reads.
//
// It also makes, read-only, the checks of writeSecret that the runtime dir
// allows as it is now (see inspectRuntimeDir), so `lockstep validate`
// already refuses a runtime dir on disk or planted by another user, instead
// of the first apply.
func (k *keyring) secretPath(project, kind, name, digest string) (string, error) {
	rd := k.opts.RuntimeDir
	if rd == "" || !filepath.IsAbs(rd) {
		return "", fmt.Errorf("[secrets].runtime_dir %q is not an absolute path; set it to a tmpfs such as /run/lockstep", rd)
	}
	if strings.ContainsAny(name, "/\\\x00") || name == "" {
		return "", fmt.Errorf("%s name %q cannot name a file", kind, name)
	}
	hexDigest := strings.TrimPrefix(digest, digestPrefix)
	base := fmt.Sprintf("%s-%s-%s", kind, name, hexDigest[:16])
	if len(base) > maxFileName {
		return "", fmt.Errorf("%s name %q is too long: the decrypted file %s-<name>-<digest16> must fit in %d bytes; shorten the name", kind, name, kind, maxFileName)
	}
	rd = filepath.Clean(rd)
	if err := inspectRuntimeDir(rd, project); err != nil {
		return "", err
	}
	return filepath.Join(rd, "secrets", project, base), nil
}

// inspectRuntimeDir makes the checks of writeSecret that need no write:
// the runtime dir, or the directory it would be created in, is a tmpfs;
// and the runtime dir, secrets/ and secrets/<project>, as far as they
// exist, are trusted directories. What does not exist yet, WriteSecrets
// creates and checks.
func inspectRuntimeDir(rd, project string) error {
	if _, err := os.Lstat(rd); errors.Is(err, os.ErrNotExist) {
		return checkTmpfsAs(existingAncestor(rd), rd)
	}
	if err := checkTmpfs(rd); err != nil {
		return err
	}
	if err := checkRuntimeDir(rd); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(rd, "secrets"), filepath.Join(rd, "secrets", project)} {
		if _, err := os.Lstat(d); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err := checkOwnDir(rd, d); err != nil {
			return err
		}
	}
	return nil
}

// WriteSecrets materializes p's decrypted configs and secrets on the tmpfs
// under opts.RuntimeDir, at the paths Load chose (Project.SecretFiles). It
// is a step of apply, run after the policy check, so `lockstep plan` and
// `lockstep validate` never write a decrypted file. Idempotent: files
// already present with the same content are left as they are. opts must
// name the runtime dir p was loaded with. No error carries the plaintext.
func WriteSecrets(p *Project, opts SecretOptions) error {
	w := p.secrets
	if w == nil || len(w.files) == 0 {
		return nil
	}
	rd := filepath.Clean(opts.RuntimeDir)
	if opts.RuntimeDir == "" || rd != w.runtimeDir {
		return fmt.Errorf("write secrets of %s: [secrets].runtime_dir %q is not the one the project was loaded with (%s); load it again", p.Name, opts.RuntimeDir, w.runtimeDir)
	}
	// Only paths and names should reach an error, but a write error is
	// the one place the plaintext is at hand: scrub it all the same.
	k := newKeyring(opts)
	for _, f := range w.files {
		if len(f.plain) >= minRedactLen {
			k.values = append(k.values, secretValue{value: string(f.plain), file: f.name})
		}
	}
	for _, f := range w.files {
		if err := writeSecret(rd, p.Name, f); err != nil {
			err = fmt.Errorf("write secrets of %s: %w", p.Name, err)
			if k.leaks(err.Error()) {
				return errors.New(k.scrub(err.Error()))
			}
			return err
		}
	}
	return nil
}

// writeSecret writes the plaintext of a config or secret to f.target,
// under <rd>/secrets/<project>/.
//
// The runtime dir may sit on a tmpfs other users can write to (/dev/shm):
// one of them could create secrets/<project> first, and a chmod by the
// agent would not take it from them. So every directory on the way is
// checked to be a real directory owned by the agent (or, for the runtime
// dir, by root and writable by no one else) before anything is written,
// and the checks hold by path afterwards because no other user can then
// rename or replace an entry in them.
func writeSecret(rd, project string, f secretWrite) error {
	dir := filepath.Join(rd, "secrets", project)
	if filepath.Dir(f.target) != dir {
		return fmt.Errorf("%s %q: %s is not under %s", f.kind, f.name, f.target, dir)
	}
	if err := ensureTmpfs(rd); err != nil {
		return err
	}
	if err := checkRuntimeDir(rd); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(rd, "secrets"), dir} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return runtimeDirError(rd, "create the directory "+d, err)
		}
		if err := checkOwnDir(rd, d); err != nil {
			return err
		}
		// Root only: the container reaches its file through the bind,
		// nobody else on the host needs to list or open it.
		if err := os.Chmod(d, 0o700); err != nil {
			return runtimeDirError(rd, "chmod 0700 "+d, err)
		}
	}
	if err := checkTmpfs(dir); err != nil {
		return err
	}
	target := f.target
	if st, err := os.Lstat(target); err == nil && st.Mode().IsRegular() && ownedByAgent(st) && st.Mode().Perm() == 0o444 && st.Size() == int64(len(f.plain)) {
		if have, err := os.ReadFile(target); err == nil && bytes.Equal(have, f.plain) {
			return nil
		}
	}
	// Temp file and rename: a container never binds a half-written file,
	// and a crash leaves at most a temp file, which PruneSecrets removes.
	// CreateTemp opens with O_CREATE|O_EXCL, which fails on an existing
	// name, symlinks included: what O_NOFOLLOW would add. No fsync: on a
	// tmpfs there is nothing to make durable.
	tmp, err := os.CreateTemp(dir, ".tmp-"+f.kind+"-")
	if err != nil {
		return runtimeDirError(rd, "create a temporary file in "+dir, err)
	}
	_, werr := tmp.Write(f.plain)
	cerr := tmp.Chmod(0o444)
	if err := errors.Join(werr, cerr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return runtimeDirError(rd, fmt.Sprintf("write the decrypted %s %q to %s", f.kind, f.name, tmp.Name()), err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		os.Remove(tmp.Name())
		return runtimeDirError(rd, "rename "+tmp.Name()+" to "+target, err)
	}
	st, err := os.Lstat(target)
	if err != nil {
		return runtimeDirError(rd, "check "+target, err)
	}
	if !st.Mode().IsRegular() || !ownedByAgent(st) {
		return fmt.Errorf("[secrets].runtime_dir %s: %s is not the regular file the agent just wrote (%v, owner %s); remove %s (lockstep creates it)", rd, target, st.Mode().Type(), ownerOf(st), dir)
	}
	return nil
}

// maxFileName is NAME_MAX on Linux file systems, tmpfs included.
const maxFileName = 255

// runtimeDirError wraps an error from writing under the runtime dir with
// the key to check. Only paths and names reach it, never plaintext.
func runtimeDirError(rd, what string, err error) error {
	return fmt.Errorf("%s under [secrets].runtime_dir %s: %w; check the directory is writable by the agent's user (uid %d) and the tmpfs is not full", what, rd, pathReason(err), os.Geteuid())
}

func ownedByAgent(st fs.FileInfo) bool {
	uid, ok := fileOwner(st)
	return ok && int64(uid) == int64(os.Geteuid())
}

func ownerOf(st fs.FileInfo) string {
	if uid, ok := fileOwner(st); ok {
		return fmt.Sprintf("uid %d", uid)
	}
	return "unknown"
}

// lstatDir returns what is at d, refusing anything but a real directory.
func lstatDir(rd, d string) (fs.FileInfo, error) {
	st, err := os.Lstat(d)
	if err != nil {
		return nil, runtimeDirError(rd, "check "+d, err)
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("[secrets].runtime_dir %s: %s is a symlink, not a directory: it could send the decrypted secrets anywhere; remove it (lockstep creates it)", rd, d)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("[secrets].runtime_dir %s: %s is not a directory (%v); remove it (lockstep creates it)", rd, d, st.Mode().Type())
	}
	if _, ok := fileOwner(st); !ok {
		return nil, fmt.Errorf("[secrets].runtime_dir %s: cannot tell who owns %s on this system", rd, d)
	}
	return st, nil
}

// checkOwnDir refuses d (secrets/ or secrets/<project>) unless it is a
// real directory owned by the agent's user: whoever owns it can read the
// decrypted files in it or swap them, whatever mode the agent sets.
func checkOwnDir(rd, d string) error {
	st, err := lstatDir(rd, d)
	if err != nil {
		return err
	}
	if !ownedByAgent(st) {
		return fmt.Errorf("[secrets].runtime_dir %s: %s is owned by %s, not by the agent's user (uid %d): that user could read or swap the decrypted secrets; remove it (lockstep creates it)", rd, d, ownerOf(st), os.Geteuid())
	}
	return nil
}

// checkRuntimeDir refuses a runtime dir another user could use to reach
// the secrets under it.
func checkRuntimeDir(rd string) error {
	st, err := lstatDir(rd, rd)
	if err != nil {
		return err
	}
	uid, _ := fileOwner(st)
	return runtimeDirTrusted(rd, uid, uint32(os.Geteuid()), st.Mode())
}

// runtimeDirTrusted says whether a runtime dir owned by uid, with mode,
// is safe for the agent running as euid. It must belong to the agent, or
// to root with nobody else allowed to write (systemd's RuntimeDirectory=
// hands the service user its own; a root-made /run/lockstep is fine too).
// And nobody else may replace the secrets/ entry in it: writable by group
// or others is refused unless the sticky bit keeps them to their own
// entries (/dev/shm itself, for an agent running as root).
func runtimeDirTrusted(rd string, uid, euid uint32, mode fs.FileMode) error {
	othersWrite := mode.Perm()&0o022 != 0
	if uid != euid && (uid != 0 || othersWrite) {
		return fmt.Errorf("[secrets].runtime_dir %s is owned by uid %d (mode %04o), not by the agent's user (uid %d) nor root without group or world write: that user could read or swap the decrypted secrets; remove it (lockstep creates it) or chown it to uid %d (systemd's RuntimeDirectory= does)", rd, uid, mode.Perm(), euid, euid)
	}
	if othersWrite && mode&fs.ModeSticky == 0 {
		return fmt.Errorf("[secrets].runtime_dir %s is writable by other users (mode %04o) without the sticky bit: they could replace its secrets/ directory; chmod go-w it", rd, mode.Perm())
	}
	return nil
}

// ensureTmpfs checks that runtimeDir is a tmpfs, creating it (mode 0700)
// when missing, but only after checking that the directory it would be
// created in is one: nothing is ever created on persistent disk.
func ensureTmpfs(runtimeDir string) error {
	if _, err := os.Stat(runtimeDir); errors.Is(err, os.ErrNotExist) {
		if err := checkTmpfsAs(existingAncestor(runtimeDir), runtimeDir); err != nil {
			return err
		}
		if err := os.MkdirAll(runtimeDir, 0o700); err != nil {
			return fmt.Errorf("create [secrets].runtime_dir %s: %w", runtimeDir, err)
		}
	}
	return checkTmpfs(runtimeDir)
}

// existingAncestor returns the nearest parent of dir that exists: where
// dir would be created.
func existingAncestor(dir string) string {
	parent := filepath.Dir(dir)
	for {
		if _, err := os.Stat(parent); err == nil || parent == filepath.Dir(parent) {
			return parent
		}
		parent = filepath.Dir(parent)
	}
}

func checkTmpfs(dir string) error { return checkTmpfsAs(dir, dir) }

// checkTmpfsAs checks the file system of dir, naming shown in the message.
func checkTmpfsAs(dir, shown string) error {
	ok, err := isTmpfs(dir)
	if err != nil {
		return fmt.Errorf("[secrets].runtime_dir %s: %w", shown, err)
	}
	if !ok {
		return fmt.Errorf("[secrets].runtime_dir %s is not a tmpfs: decrypted secrets must never be written to persistent disk; use /run/lockstep (systemd RuntimeDirectory=)", shown)
	}
	return nil
}

// PruneSecrets removes the decrypted files materialized for project under
// runtimeDir that are not in keep (host paths). keep must hold every bind
// source still in use: Project.SecretFiles of the project being deployed
// and those of containers that still run from an older release, since a
// container whose bind source is gone cannot be restarted. Leftover temp
// files of an interrupted write are removed too. A project without
// materialized files is not an error.
func PruneSecrets(runtimeDir, project string, keep map[string]bool) error {
	if !filepath.IsAbs(runtimeDir) {
		return fmt.Errorf("prune secrets: runtime dir %q is not absolute", runtimeDir)
	}
	if !projectNameRE.MatchString(project) {
		return fmt.Errorf("prune secrets: invalid project name %q", project)
	}
	rd := filepath.Clean(runtimeDir)
	dir := filepath.Join(rd, "secrets", project)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// The checks writeSecret makes: removing by path through a directory
	// another user planted (a symlink to /etc) would delete what it names.
	if err := checkRuntimeDir(rd); err != nil {
		return fmt.Errorf("prune secrets of %s: %w", project, err)
	}
	for _, d := range []string{filepath.Join(rd, "secrets"), dir} {
		if err := checkOwnDir(rd, d); err != nil {
			return fmt.Errorf("prune secrets of %s: %w", project, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("prune secrets of %s: %w", project, err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if keep[p] {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("prune secrets of %s: %w", project, err))
		}
	}
	return errors.Join(errs...)
}
