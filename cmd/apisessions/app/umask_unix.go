//go:build unix

package app

import "syscall"

// restrictUmask makes every file and directory the process creates from now on its owner's
// alone (0600 and 0700 at most), whatever mode the code or a library asks for: SQLite
// creates its WAL and shared-memory files with the mode of the database file as first
// created, 0644 under the usual umask.
func restrictUmask() { syscall.Umask(0o077) }
