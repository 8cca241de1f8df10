//go:build !unix

package app

// restrictUmask does nothing where there is no umask; files are created with the modes the
// code asks for (0600 for data files).
func restrictUmask() {}
