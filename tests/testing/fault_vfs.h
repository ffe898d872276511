// File: fault_vfs.h
//
// The catalog's side of the file-system seam: SQLite does its own file I/O through a VFS, so
// faults reach it through a VFS shim that wraps the default one and consults a
// FaultInjectingFs (fault_fs.h) before each write (FsOp::kWrite), sync (kFsync) and truncate
// (kTruncate) of the database, its WAL and its journal, matched by the file's path. The
// faults become what SQLite's own unix VFS returns for them: ENOSPC SQLITE_FULL, EIO
// SQLITE_IOERR_WRITE, a short write half a page written and then SQLITE_FULL, a failed sync
// SQLITE_IOERR_FSYNC. Open the catalog with CatalogOptions::sqlite_vfs = UseFaultVfs(&fs).
#ifndef MODELDIST_TESTS_TESTING_FAULT_VFS_H_
#define MODELDIST_TESTS_TESTING_FAULT_VFS_H_

#include "tests/testing/fault_fs.h"

namespace modeldist::testing {

// Registers the shim (once per process) and points it at `fs` (null: no faults); returns the
// VFS's name. One FaultInjectingFs at a time: tests of one binary run one after another.
const char* UseFaultVfs(FaultInjectingFs* fs);

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_FAULT_VFS_H_
