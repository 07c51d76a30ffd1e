package gitsource

import (
	"io/fs"
	"syscall"
)

// statOf is the part of a file's stat that any write changes: the inode
// (a file replaced), mtime, and ctime, which also moves on chmod or a
// touch that sets mtime back and cannot itself be set back.
func statOf(fi fs.FileInfo) fileStat {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStat{}
	}
	return fileStat{Ino: st.Ino, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
}

// diskStat is what a file takes on disk: its identity, so that hard links
// are counted once, and its allocated blocks (st_blocks is in 512-byte
// units whatever the file system's block size).
func diskStat(fi fs.FileInfo) (id [2]uint64, bytes int64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return id, fi.Size(), false
	}
	return [2]uint64{uint64(st.Dev), st.Ino}, st.Blocks * 512, true
}
