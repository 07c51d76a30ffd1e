//go:build !linux

package gitsource

import "io/fs"

// statOf is unknown off Linux: every check of a release hashes its files.
func statOf(fs.FileInfo) fileStat { return fileStat{} }
