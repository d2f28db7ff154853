//! What makes one iocd instance distinct from another on the same machine or broker: its state
//! folder, held under an exclusive lock while it runs, and the MQTT client id derived from it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The lock on a state folder; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Why a state folder could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Another iocd holds the folder. Retryable once that one stops.
    #[error("another iocd{pid} is using {dir}; stop it, or give this one its own folder ([alerts] state_dir)")]
    Held {
        /// The folder, as configured.
        dir: String,
        /// ` (pid N)` when the holder wrote its pid.
        pid: String,
    },
    /// The folder or its lock file cannot be created or locked. Permanent.
    #[error("cannot clear the state folder {dir} for a fresh start")]
    Clear {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock the state folder {dir}")]
    Io {
        /// The folder, as configured.
        dir: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// Takes `dir` (created if missing) for this process: a second iocd on the same folder would
/// share its alert state and its MQTT session, so it is refused.
pub fn lock_state_dir(dir: &Path) -> Result<StateLock, InstanceError> {
    let shown = dir.display().to_string();
    let io = |source| InstanceError::Io {
        dir: shown.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("iocd.lock"))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let pid = match text.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            return Err(InstanceError::Held { dir: shown, pid });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(StateLock { _file: file })
}

/// Deletes everything in the locked state folder `dir` but its lock file, for a demo that
/// starts fresh; returns how many entries went.
pub fn clear_state_dir(dir: &Path) -> Result<usize, InstanceError> {
    let shown = dir.display().to_string();
    let io = |source| InstanceError::Clear {
        dir: shown.clone(),
        source,
    };
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_name() == "iocd.lock" {
            continue;
        }
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io)?;
        } else {
            std::fs::remove_file(&path).map_err(io)?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// A client id for `prefix` that stays the same across restarts of one instance (the broker
/// keeps its persistent session under it) and differs between instances: a hash of the host
/// name and the state folder's absolute path.
pub fn derived_client_id(prefix: &str, state_dir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let dir = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let identity = format!("{}\n{}", host.trim(), dir.display());
    format!("{prefix}-{:016x}", fnv1a(identity.as_bytes()))
}

/// Fills in the ids that must differ between instances and stay across restarts, where the
/// configuration leaves them open: the MQTT client id and the Kafka static-membership id, both
/// [`derived_client_id`] of the state folder.
pub fn fill_instance_ids(config: &mut crate::Config) {
    let id = derived_client_id("iocd", &config.alerts.state_dir);
    if config.mqtt.client_id.is_empty() {
        config.mqtt.client_id = id.clone();
    }
    // Static membership, for `kafka.assignment = "group"`: a restarted instance takes its
    // partitions back at once (with tansu, a restart without it was seen to get none for
    // minutes).
    config.kafka.group_instance_id.get_or_insert(id);
}

/// FNV-1a, 64 bits: stable across Rust releases, unlike the standard library's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("iocd-instance-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_held_state_folder_is_refused_with_its_holder() {
        let dir = temp_dir("held");
        let first = lock_state_dir(&dir).expect("first lock");
        let e = lock_state_dir(&dir).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "another iocd (pid {}) is using {}; stop it, or give this one its own folder ([alerts] state_dir)",
                std::process::id(),
                dir.display()
            )
        );
        drop(first);
        let again = lock_state_dir(&dir);
        assert!(again.is_ok(), "free again once dropped");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fresh_start_empties_the_folder_but_keeps_its_lock() {
        let dir = temp_dir("fresh");
        let lock = lock_state_dir(&dir).expect("lock");
        std::fs::write(dir.join("alerts.redb"), b"old").unwrap();
        std::fs::create_dir_all(dir.join("spool")).unwrap();
        std::fs::write(dir.join("spool/spool.redb"), b"old").unwrap();
        assert_eq!(clear_state_dir(&dir).expect("cleared"), 2);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["iocd.lock"]);
        assert!(lock_state_dir(&dir).is_err(), "still held by this run");
        drop(lock);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn client_ids_follow_the_state_folder() {
        let a = derived_client_id("iocd", Path::new("/srv/a/iocd-state"));
        assert_eq!(a, derived_client_id("iocd", Path::new("/srv/a/iocd-state")));
        assert_ne!(a, derived_client_id("iocd", Path::new("/srv/b/iocd-state")));
        assert!(a.starts_with("iocd-") && a.len() == 5 + 16, "{a}");
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
