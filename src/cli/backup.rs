//! `chatserver backup FILE`: a consistent copy of the SQLite database taken while the
//! server runs (SQLite's online backup API: readers and the writer go on; pages the
//! writer changes meanwhile are copied again), written to FILE, and the uploads copied
//! into `FILE.uploads/`. On PostgreSQL use `pg_dump` (the README says how).

use std::{
    ffi::{CStr, CString},
    path::{Path, PathBuf},
    ptr,
};

use libsqlite3_sys as ffi;

use super::CliError;
use crate::{config::Settings, storage::DbTarget};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the copy of the database goes (replaced if it exists).
    pub file: PathBuf,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let settings = Settings::load()?;
    let target = DbTarget::resolve(settings.database_url.as_deref(), &settings.data_dir)?;
    let DbTarget::Sqlite(db) = &target else {
        return Err(CliError::new(
            "the database is PostgreSQL: back it up with pg_dump (see the README); uploads are files in the upload directory",
        ));
    };
    if !Path::new(db).exists() {
        return Err(CliError::new(format!("no database at {db}")));
    }
    let tmp = args.file.with_extension("partial");
    backup_sqlite(db, &tmp)?;
    std::fs::rename(&tmp, &args.file).map_err(|e| CliError::new(format!("{}: {e}", args.file.display())))?;
    let uploads = settings
        .upload_dir
        .clone()
        .unwrap_or_else(|| settings.data_dir.join("uploads"));
    let mut dest = args.file.clone().into_os_string();
    dest.push(".uploads");
    let n = copy_dir(&uploads, Path::new(&dest))?;
    println!(
        "database copied to {}; {n} upload(s) copied to {}",
        args.file.display(),
        PathBuf::from(dest).display()
    );
    Ok(())
}

/// Copies the database at `src` into a new file `dst` with the online backup API.
fn backup_sqlite(src: &str, dst: &Path) -> Result<(), CliError> {
    let _ = std::fs::remove_file(dst);
    let c = |s: &str| CString::new(s).map_err(|_| CliError::new("a path with a NUL byte"));
    let (src_c, dst_c) = (c(src)?, c(&dst.to_string_lossy())?);
    let mut from: *mut ffi::sqlite3 = ptr::null_mut();
    let mut to: *mut ffi::sqlite3 = ptr::null_mut();
    // SAFETY: plain use of the SQLite C API: every handle opened here is closed before
    // returning, and the strings outlive the calls.
    unsafe {
        let result = (|| {
            if ffi::sqlite3_open_v2(src_c.as_ptr(), &mut from, ffi::SQLITE_OPEN_READONLY, ptr::null()) != ffi::SQLITE_OK
            {
                return Err(error(from, "opening the database"));
            }
            ffi::sqlite3_busy_timeout(from, 5000);
            let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE;
            if ffi::sqlite3_open_v2(dst_c.as_ptr(), &mut to, flags, ptr::null()) != ffi::SQLITE_OK {
                return Err(error(to, "creating the copy"));
            }
            let main = c"main";
            let b = ffi::sqlite3_backup_init(to, main.as_ptr(), from, main.as_ptr());
            if b.is_null() {
                return Err(error(to, "starting the backup"));
            }
            loop {
                match ffi::sqlite3_backup_step(b, 1024) {
                    ffi::SQLITE_DONE => break,
                    ffi::SQLITE_OK => {}
                    ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => std::thread::sleep(std::time::Duration::from_millis(20)),
                    rc => {
                        ffi::sqlite3_backup_finish(b);
                        return Err(CliError::new(format!("backup step failed (SQLite code {rc})")));
                    }
                }
            }
            if ffi::sqlite3_backup_finish(b) != ffi::SQLITE_OK {
                return Err(error(to, "finishing the backup"));
            }
            Ok(())
        })();
        ffi::sqlite3_close(from);
        ffi::sqlite3_close(to);
        result
    }
}

/// SQLite's message for the last error on `db`.
unsafe fn error(db: *mut ffi::sqlite3, what: &str) -> CliError {
    let msg = if db.is_null() {
        "out of memory".to_string()
    } else {
        // SAFETY: `db` is a handle returned by sqlite3_open_v2; errmsg is NUL-terminated.
        unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)).to_string_lossy().into_owned() }
    };
    CliError::new(format!("{what}: {msg}"))
}

/// Copies the files of `from` (uploads are immutable, named by their content) into
/// `to`; how many.
fn copy_dir(from: &Path, to: &Path) -> Result<usize, CliError> {
    let io = |e: std::io::Error| CliError::new(format!("copying uploads: {e}"));
    let entries = match std::fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(e)),
    };
    std::fs::create_dir_all(to).map_err(io)?;
    let mut n = 0;
    for entry in entries {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).map_err(io)?;
            n += 1;
        }
    }
    Ok(n)
}
