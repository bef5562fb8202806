//! A VFS for the writer's connection that gathers a commit's WAL frames into a few large writes.
//!
//! SQLite appends each page of a commit to the WAL as two `pwrite`s: the 24-byte frame header,
//! then the page. A frame is 24 bytes longer than a page, so the page straddles two pages of the
//! OS page cache and each frame costs the kernel three page updates; a commit of `ingest` writes
//! about 36 frames. This VFS wraps the default one and, for WAL files only, keeps writes that
//! continue the previous one in memory and hands them to the file in writes of up to
//! [`CAPACITY`] bytes, the last of them when the commit's last frame is written — before SQLite publishes the commit in the WAL index, so no
//! reader (in this process or another) can look for a frame that is not in the file. Anything
//! else — a write elsewhere in the file, a read, a sync, a truncation, the file's size, closing —
//! first writes out what is held. A crash loses only frames of a commit that had not finished,
//! which SQLite's recovery ignores anyway (their checksums do not chain to a commit frame).
//!
//! The commit's last frame is the one whose header carries the database size (bytes 4..8);
//! from that header to the next frame's, every write goes straight out.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the writer's connection opens with.
pub(super) const VFS: &CStr = c"parley-wal-gather";

/// Bytes held before they are written out even without a commit. The default VFS writes at
/// most 128 KiB − 1 bytes a call (it masks the length with 0x1ffff, and calls a short write a
/// full disk).
const CAPACITY: usize = 128 * 1024 - 4096;
/// A WAL frame header; its bytes 4..8 are non-zero on a commit's last frame.
const FRAME_HEADER: c_int = 24;

/// Registers the VFS once per process; the error is SQLite's, if it refused.
pub(super) fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite3_vfs_find returns the default VFS, which lives as long as the
            // process; the copy made here is leaked on purpose (a registered VFS must outlive
            // every connection that uses it).
            unsafe {
                let base = ffi::sqlite3_vfs_find(ptr::null());
                if base.is_null() {
                    return Err("SQLite has no default VFS".to_string());
                }
                let mut vfs = ptr::read(base);
                vfs.zName = VFS.as_ptr();
                vfs.szOsFile = (shim_offset() + (*base).szOsFile as usize) as c_int;
                vfs.pAppData = base.cast::<c_void>();
                vfs.pNext = ptr::null_mut();
                vfs.xOpen = Some(open);
                let rc = ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0);
                if rc == ffi::SQLITE_OK {
                    Ok(())
                } else {
                    Err(format!("SQLite refused the WAL-gathering VFS (code {rc})"))
                }
            }
        })
        .clone()
}

/// A WAL file as SQLite sees it: this header, then the default VFS's file at `shim_offset()`.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    held: *mut Held,
}

/// Writes held back: one run of the file from `start`.
struct Held {
    bytes: Vec<u8>,
    start: i64,
    /// Where the last write to the file ended (-1: none yet); a write there continues the run.
    end: i64,
    /// Since the last frame header, which marked a commit's last frame: every write from here
    /// to the next header goes straight out (the page that completes the commit, and with
    /// `synchronous = FULL` on a device without powersafe overwrite, the copies of that frame
    /// SQLite pads the commit with around its fsync).
    in_commit_tail: bool,
}

fn shim_offset() -> usize {
    std::mem::size_of::<WalFile>().next_multiple_of(16)
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
    let Some(base_open) = (*base).xOpen else {
        return ffi::SQLITE_CANTOPEN;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Every other file is the default VFS's own, in place: SQLite calls its methods directly.
        return base_open(base, name, file, flags, out_flags);
    }
    let shim = file.cast::<WalFile>();
    let real = file.cast::<u8>().add(shim_offset()).cast::<ffi::sqlite3_file>();
    (*shim).base.pMethods = ptr::null();
    let rc = base_open(base, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    (*shim).real = real;
    (*shim).held = Box::into_raw(Box::new(Held { bytes: Vec::new(), start: 0, end: -1, in_commit_tail: false }));
    (*shim).base.pMethods = &WAL_METHODS;
    ffi::SQLITE_OK
}

unsafe fn parts<'a>(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'a ffi::sqlite3_io_methods, &'a mut Held) {
    let shim = file.cast::<WalFile>();
    let real = (*shim).real;
    (real, &*(*real).pMethods, &mut *(*shim).held)
}

/// Writes out what is held.
unsafe fn flush(real: *mut ffi::sqlite3_file, methods: &ffi::sqlite3_io_methods, held: &mut Held) -> c_int {
    if held.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(write) = methods.xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let rc = write(real, held.bytes.as_ptr().cast::<c_void>(), held.bytes.len() as c_int, held.start);
    held.bytes.clear();
    rc
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, methods, held) = parts(file);
    let flushed = flush(real, methods, held);
    let shim = file.cast::<WalFile>();
    drop(Box::from_raw((*shim).held));
    (*shim).held = ptr::null_mut();
    let closed = methods.xClose.map_or(ffi::SQLITE_OK, |f| f(real));
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    let (real, methods, held) = parts(file);
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    if offset != held.end || held.bytes.len() + len > CAPACITY {
        let rc = flush(real, methods, held);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if offset == held.end && len <= CAPACITY {
        if held.bytes.is_empty() {
            held.start = offset;
        }
        held.bytes.extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
    } else {
        let Some(write) = methods.xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let rc = write(real, data, amount, offset);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    held.end = offset + i64::from(amount);
    if amount == FRAME_HEADER {
        let header = std::slice::from_raw_parts(data.cast::<u8>(), len);
        held.in_commit_tail = header[4..8] != [0, 0, 0, 0];
        return ffi::SQLITE_OK;
    }
    if held.in_commit_tail {
        return flush(real, methods, held);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, data: *mut c_void, amount: c_int, offset: i64) -> c_int {
    let (real, methods, held) = parts(file);
    let rc = flush(real, methods, held);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    methods.xRead.map_or(ffi::SQLITE_IOERR_READ, |f| f(real, data, amount, offset))
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    let (real, methods, held) = parts(file);
    let rc = flush(real, methods, held);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    held.end = -1;
    methods.xTruncate.map_or(ffi::SQLITE_IOERR_TRUNCATE, |f| f(real, size))
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let (real, methods, held) = parts(file);
    let rc = flush(real, methods, held);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    methods.xSync.map_or(ffi::SQLITE_IOERR_FSYNC, |f| f(real, flags))
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    let (real, methods, held) = parts(file);
    let rc = flush(real, methods, held);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    methods.xFileSize.map_or(ffi::SQLITE_IOERR_FSTAT, |f| f(real, size))
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    let (real, methods, held) = parts(file);
    let rc = flush(real, methods, held);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    methods.xFileControl.map_or(ffi::SQLITE_NOTFOUND, |f| f(real, op, arg))
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (real, methods, _) = parts(file);
    methods.xLock.map_or(ffi::SQLITE_OK, |f| f(real, level))
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (real, methods, _) = parts(file);
    methods.xUnlock.map_or(ffi::SQLITE_OK, |f| f(real, level))
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let (real, methods, _) = parts(file);
    methods.xCheckReservedLock.map_or(ffi::SQLITE_OK, |f| f(real, out))
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, methods, _) = parts(file);
    methods.xSectorSize.map_or(4096, |f| f(real))
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, methods, _) = parts(file);
    methods.xDeviceCharacteristics.map_or(0, |f| f(real))
}

/// Version 1: a WAL file is never mapped and has no shared memory of its own (SQLite asks the
/// database file for those).
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rusqlite::{params, Connection, OpenFlags};

    use super::*;

    fn rows(db: &Connection) -> BTreeMap<i64, Vec<u8>> {
        let mut stmt = db.prepare("SELECT k, v FROM t ORDER BY k").expect("prepare");
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    /// Commits small and large (past the held capacity, and past a tiny page cache, so frames
    /// spill mid-transaction and are written again before the commit): after each one, a
    /// connection on the default VFS reads exactly what was committed, and so does the file
    /// after a checkpoint and a reopen.
    #[test]
    fn another_connection_reads_every_commit_at_once_and_the_file_holds_them() {
        register().expect("register");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let writer = Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), VFS).expect("open");
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).expect("wal");
        assert_eq!(mode, "wal");
        writer
            .execute_batch(
                "PRAGMA synchronous = NORMAL; PRAGMA cache_size = 8; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)",
            )
            .expect("setup");
        let reader = Connection::open(&path).expect("reader");
        let mut model: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..120 {
            let writes = if round % 10 == 9 { 400 } else { 1 + (next() % 20) as usize };
            writer.execute_batch("BEGIN").expect("begin");
            for _ in 0..writes {
                let k = (next() % 600) as i64;
                let len = (next() % 1500) as usize;
                let v: Vec<u8> = (0..len).map(|i| (i as u64 ^ next()) as u8).collect();
                writer.execute("INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)", params![k, v]).expect("write");
                model.insert(k, v);
            }
            writer.execute_batch("COMMIT").expect("commit");
            assert!(rows(&reader) == model, "round {round}: another connection reads what was committed");
        }
        let checkpointed: i64 =
            reader.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).expect("checkpoint");
        assert_eq!(checkpointed, 0, "the checkpoint was not blocked");
        drop(writer);
        drop(reader);
        let reopened = Connection::open(&path).expect("reopen");
        let check: String = reopened.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
        assert_eq!(check, "ok");
        assert!(rows(&reopened) == model, "the file holds every commit");
    }
}
