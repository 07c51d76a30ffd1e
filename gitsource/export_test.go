package gitsource

// SetLinkFunc makes s link files with link instead of os.Link, so that a
// test can make every hard link fail (see dedupe).
func SetLinkFunc(s *Source, link func(oldname, newname string) error) { s.linkFile = link }
