//! JSON values from the command line, a file or stdin: `--args '[...]'` or a message inline,
//! or `--args-file PATH` / `--msg-file PATH` (`-` for stdin) for values past the length limit
//! of one command-line argument (128 KiB on Linux).

use crate::Failure;
use anyhow::anyhow;
use std::io::Read;
use std::path::Path;

/// The most a file or stdin may hold: a node's default largest message.
pub(crate) const MAX_INPUT_BYTES: u64 = 64 << 20;

/// The JSON text for `flag`: read from `file` (`-` is stdin) if one is given, else `inline`.
///
/// # Errors
///
/// A usage error if the file cannot be read, holds more than [`MAX_INPUT_BYTES`], or is not
/// UTF-8.
pub(crate) fn json_text(inline: &str, file: Option<&Path>, flag: &str) -> Result<String, Failure> {
    let Some(path) = file else {
        return Ok(inline.to_owned());
    };
    let shown = if path == Path::new("-") {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| {
        Failure::Usage(anyhow!(
            "cannot read {flag} {shown}: {e}. Pass the path of a file holding JSON, or - for stdin"
        ))
    })?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(Failure::Usage(anyhow!(
            "{flag} {shown} holds more than {} MiB, the largest message a node accepts by default",
            MAX_INPUT_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        Failure::Usage(anyhow!(
            "{flag} {shown} is not UTF-8 text (byte {} is invalid); pass JSON",
            e.utf8_error().valid_up_to()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(f: Failure) -> String {
        match f {
            Failure::Usage(e) | Failure::Runtime(e) => e.to_string(),
        }
    }

    #[test]
    fn inline_text_is_used_without_a_file() {
        assert_eq!(
            json_text("[1]", None, "--args-file").ok(),
            Some("[1]".into())
        );
    }

    #[test]
    fn a_file_replaces_the_inline_text() {
        let path =
            std::env::temp_dir().join(format!("steinadler-input-{}.json", std::process::id()));
        std::fs::write(&path, "[\"from a file\"]").unwrap();
        let text = json_text("[]", Some(&path), "--args-file").ok();
        std::fs::write(&path, [0x5b, 0xff, 0x5d]).unwrap();
        let not_utf8 = json_text("[]", Some(&path), "--args-file")
            .err()
            .map(message);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(text.as_deref(), Some("[\"from a file\"]"));
        let not_utf8 = not_utf8.expect("invalid UTF-8 is refused");
        assert!(
            not_utf8.contains("not UTF-8") && not_utf8.contains("byte 1"),
            "{not_utf8}"
        );
    }

    #[test]
    fn a_missing_file_says_what_to_pass() {
        let e = json_text(
            "[]",
            Some(Path::new("/nonexistent/args.json")),
            "--msg-file",
        )
        .err()
        .map(message)
        .expect("a missing file is refused");
        assert!(
            e.contains("cannot read --msg-file /nonexistent/args.json"),
            "{e}"
        );
        assert!(e.contains("or - for stdin"), "{e}");
    }
}
