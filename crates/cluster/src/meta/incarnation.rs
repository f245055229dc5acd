//! A node's incarnation: a random 128-bit id made together with its data
//! directory and kept in it. A node whose directory was wiped comes back
//! under the same node id with a new incarnation, which is how the cluster
//! tells it from its old self (docs/cluster.md: an empty replica must never
//! vote as if it held its old log).

use rand::RngCore;
use spool_log::fsutil;
use std::io;
use std::path::Path;

/// The file in the data directory that holds the incarnation.
pub const INCARNATION_FILE: &str = "incarnation";

/// The file in the data directory that holds the node's generation (absent:
/// 0, the node's first data directory).
pub const GENERATION_FILE: &str = "generation";

/// An incarnation's length: 128 bits as lowercase hex digits.
pub const INCARNATION_HEX_LEN: usize = 32;

/// A new random incarnation.
pub fn new_incarnation() -> String {
    let mut bits = [0u8; INCARNATION_HEX_LEN / 2];
    rand::rng().fill_bytes(&mut bits);
    bits.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keeps a new `incarnation` in `dir` (fsync'd): done once the node may
/// take part in the cluster with it, so a start refused with a new one
/// leaves none behind and the next start is checked again.
pub fn keep(dir: &Path, incarnation: &str) -> io::Result<()> {
    fsutil::write_atomic(
        &dir.join(INCARNATION_FILE),
        format!("{incarnation}\n").as_bytes(),
    )
    .map_err(|e| io::Error::other(e.to_string()))
}

/// The generation kept in `dir` (0 when none is).
pub fn load_generation(dir: &Path) -> io::Result<u64> {
    let path = dir.join(GENERATION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim_end_matches('\n').parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a generation (a number)", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Keeps the node's `generation` in `dir` (fsync'd), before the
/// incarnation that goes with it: a start that stops between the two is
/// taken for a new directory again.
pub fn keep_generation(dir: &Path, generation: u64) -> io::Result<()> {
    fsutil::write_atomic(
        &dir.join(GENERATION_FILE),
        format!("{generation}\n").as_bytes(),
    )
    .map_err(|e| io::Error::other(e.to_string()))
}

/// Whether `text` has an incarnation's form (not whether any node has it).
pub fn is_incarnation(text: &str) -> bool {
    text.len() == INCARNATION_HEX_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The incarnation kept in `dir`, or a new one (not yet kept: [`keep`]
/// it), and whether it is new. A file that is there but damaged is an
/// error, not a reason to make a new one: the directory still holds this
/// node's logs, and a new incarnation would have the cluster treat it as
/// wiped.
pub fn load_or_create(dir: &Path) -> io::Result<(String, bool)> {
    let path = dir.join(INCARNATION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let incarnation = text.trim_end_matches('\n');
            if !is_incarnation(incarnation) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: not an incarnation ({INCARNATION_HEX_LEN} lowercase hex digits)",
                        path.display()
                    ),
                ));
            }
            Ok((incarnation.to_owned(), false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((new_incarnation(), true)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_incarnations_have_the_form_and_differ() {
        let a = new_incarnation();
        let b = new_incarnation();
        assert!(is_incarnation(&a), "{a}");
        assert_ne!(a, b);
        assert!(!is_incarnation(&a.to_uppercase()));
        assert!(!is_incarnation(&a[1..]));
        assert!(!is_incarnation(&format!("{}g", &a[1..])));
    }

    #[test]
    fn an_incarnation_is_made_once_and_then_kept() {
        let dir = tempfile::TempDir::new().unwrap();
        let (first, made) = load_or_create(dir.path()).unwrap();
        assert!(made, "new at the first start");
        let (second, made) = load_or_create(dir.path()).unwrap();
        assert!(made && second != first, "not kept until `keep`");
        keep(dir.path(), &first).unwrap();
        assert_eq!(load_or_create(dir.path()).unwrap(), (first, false));
        std::fs::write(dir.path().join(INCARNATION_FILE), "not hex\n").unwrap();
        assert!(
            load_or_create(dir.path()).is_err(),
            "a damaged file is kept, not replaced"
        );
    }
}
