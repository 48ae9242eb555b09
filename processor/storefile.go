package iforestprocessor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.opentelemetry.io/collector/component"
)

// The contrib file_storage extension keeps each component's data in a bbolt
// file, which bbolt reads through a memory map. A damaged file can crash
// the process where no caller can catch it: when file_storage opens the
// file, bbolt walks its whole tree (to rebuild its list of free pages, as
// file_storage does not save it) in a goroutine of its own, and a page
// beyond the end of a truncated file faults there (SIGBUS), on every start.
// guard only catches faults in the goroutine that calls the extension. So
// before asking file_storage for its client, the processor opens the file
// read-only itself (bbolt does not walk the tree then) and walks the tree in
// its own goroutine under guard; a file that fails is moved aside, and
// file_storage starts a new one.
//
// Limits: the check needs the file's path, which file_storage does not
// export (fileStorageFile reads it by reflection; with another storage
// extension, or a file_storage that stores it differently, there is no check
// and only guard protects). A file damaged after the check, while the
// collector runs, can still crash bbolt's own goroutines: the walk that
// follows a failed write, file_storage's on_rebound compaction.

const fileStoragePkg = "github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"

// errStoreLocked: another process holds the storage file's lock.
var errStoreLocked = errors.New("the storage file is locked by another process")

// fileStorageFile returns the file in which the file_storage extension ext
// keeps the data of the processor id, "<directory>/processor_<type>_<name>"
// as file_storage documents it, or "" if ext is not file_storage or the
// directory cannot be read from it. (TestFileStorageFile fails when a newer
// file_storage keeps its directory elsewhere.)
func fileStorageFile(ext component.Component, id component.ID) string {
	v := reflect.ValueOf(ext)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct || v.Elem().Type().PkgPath() != fileStoragePkg {
		return ""
	}
	cfg := v.Elem().FieldByName("cfg")
	if cfg.Kind() != reflect.Pointer || cfg.IsNil() || cfg.Elem().Kind() != reflect.Struct {
		return ""
	}
	dir := cfg.Elem().FieldByName("Directory")
	if dir.Kind() != reflect.String || dir.String() == "" {
		return ""
	}
	name := fileStorageName(fmt.Sprintf("processor_%s_%s", id.Type(), id.Name()))
	if len(name) > 255 {
		return "" // file_storage hashes names too long for a file system
	}
	return filepath.Join(dir.String(), name)
}

// fileStorageName replaces what file_storage considers unsafe in a file name
// as it does: each such character becomes ~ and its code point in hex.
func fileStorageName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "~%04X", r)
		}
	}
	return b.String()
}

// checkStoreFile checks a bbolt file before file_storage opens it: nil if it
// is sound or absent (or unreadable to this process: opening it will say
// why), an error wrapping errStoreLocked if another process holds it, and
// else what is wrong with it.
func checkStoreFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	var db *bbolt.DB
	err = guard(func() (err error) {
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
		return err
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("%w: %s", errStoreLocked, path)
	case errors.Is(err, fs.ErrPermission):
		return nil
	case err != nil:
		return fmt.Errorf("bbolt cannot open it: %w", err)
	}
	defer func() { _ = guard(db.Close) }()
	return guard(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			// A sound file holds every page up to the database's size.
			if need := tx.Size(); fi.Size() < need {
				return fmt.Errorf("truncated: the file has %d bytes, its database %d", fi.Size(), need)
			}
			// Every page of the tree, as file_storage's open will walk it.
			return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error { return walkBucket(b) })
		})
	})
}

func walkBucket(b *bbolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				return walkBucket(nb)
			}
		}
		return nil
	})
}

// moveAside renames a damaged storage file out of the way (replacing one
// moved aside before) and returns its new name.
func moveAside(path string) (string, error) {
	aside := path + ".damaged"
	return aside, os.Rename(path, aside)
}
