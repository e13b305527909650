//! File plumbing for security material: private directories, atomic writes with the right
//! modes (0600 for secrets, 0644 for certificates, 0700 for directories we create), and reading
//! files with errors that name the file and say what to do.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::SecurityError;

/// Whether a file holds a secret (mode 0600) or public material (mode 0644).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sensitivity {
    Secret,
    Public,
}

fn io_err(path: &Path, source: io::Error) -> SecurityError {
    SecurityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` and missing parents; the ones created get mode 0700.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), SecurityError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| io_err(dir, e))
}

/// Writes `contents` to `dir/name` atomically: a temporary file in the same directory, with
/// the final mode from the start, synced, then renamed over the target.
pub(crate) fn write_file(
    dir: &Path,
    name: &str,
    contents: &[u8],
    sensitivity: Sensitivity,
) -> Result<(), SecurityError> {
    ensure_dir(dir)?;
    let path = dir.join(name);
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        hex::encode(crate::random_bytes::<6>())
    ));
    let result = write_new(&tmp, contents, sensitivity).and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&path, e));
    }
    // Make the rename durable; failure here does not undo the write, so it is not fatal.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_new(path: &Path, contents: &[u8], sensitivity: Sensitivity) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(
        &mut options,
        match sensitivity {
            Sensitivity::Secret => 0o600,
            Sensitivity::Public => 0o644,
        },
    );
    #[cfg(not(unix))]
    let _ = sensitivity;
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Reads `dir/name`; a missing file becomes [`SecurityError::MissingFile`] with `hint`.
pub(crate) fn read_required(dir: &Path, name: &str, hint: &str) -> Result<String, SecurityError> {
    let path = dir.join(name);
    read_optional_path(&path)?.ok_or_else(|| SecurityError::MissingFile {
        path,
        hint: hint.to_owned(),
    })
}

/// Reads `dir/name` if it exists.
pub(crate) fn read_optional(dir: &Path, name: &str) -> Result<Option<String>, SecurityError> {
    read_optional_path(&dir.join(name))
}

fn read_optional_path(path: &Path) -> Result<Option<String>, SecurityError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Parses one 64-hex-digit key (surrounding whitespace allowed) read from `path`.
pub(crate) fn parse_hex32(path: &Path, text: &str) -> Result<[u8; 32], SecurityError> {
    let mut out = [0u8; 32];
    let text = text.trim();
    if text.len() != 64 || hex::decode_to_slice(text, &mut out).is_err() {
        return Err(SecurityError::BadFile {
            path: path.to_owned(),
            reason: "expected exactly 64 hexadecimal digits (a 32-byte key); restore it from \
                     another node of the cluster"
                .to_owned(),
        });
    }
    Ok(out)
}

/// Parses one 64-hex key per non-empty line (lines starting with '#' are comments).
pub(crate) fn parse_key_lines(path: &Path, text: &str) -> Result<Vec<[u8; 32]>, SecurityError> {
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_hex32(path, l))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(SecurityError::BadFile {
            path: path.to_owned(),
            reason: "it holds no key; put one 64-hex key per line (primary first), or delete \
                     the file to use the key derived from cluster.secret"
                .to_owned(),
        });
    }
    Ok(keys)
}

/// `dir/name` as a path, for error messages.
pub(crate) fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// `key` as a line of lowercase hex.
pub(crate) fn hex_line(key: &[u8]) -> String {
    let mut line = hex::encode(key);
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_modes_and_no_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        write_file(&dir, "s", b"one", Sensitivity::Secret).unwrap();
        write_file(&dir, "s", b"two", Sensitivity::Secret).unwrap();
        write_file(&dir, "p", b"pub", Sensitivity::Public).unwrap();
        assert_eq!(fs::read_to_string(dir.join("s")).unwrap(), "two");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.join("s")), 0o600);
            // Public files get 0644 minus the umask.
            assert_eq!(mode(&dir.join("p")) & 0o700, 0o600);
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&tmp.path().join("a")), 0o700);
        }
    }

    #[test]
    fn hex_parsing() {
        let p = Path::new("k");
        let key = parse_hex32(p, &hex_line(&[0xcd; 32])).unwrap();
        assert_eq!(key, [0xcd; 32]);
        assert!(parse_hex32(p, "abcd").is_err());
        let text = format!(
            "# primary\n{}\n\n{}",
            hex::encode([1; 32]),
            hex::encode([2; 32])
        );
        assert_eq!(parse_key_lines(p, &text).unwrap(), vec![[1; 32], [2; 32]]);
        let err = parse_key_lines(p, "\n# nothing\n").unwrap_err().to_string();
        assert!(err.contains("holds no key"), "{err}");
    }
}
