//! Where the admin bearer token comes from: given (flag or `MLSYSOPS_ADMIN_TOKEN`), else the file
//! `mlsysops serve` generates in its data dir.

use std::path::{Path, PathBuf};

/// The environment variable holding the admin token, read by `serve` and by clients.
pub const ADMIN_TOKEN_ENV: &str = "MLSYSOPS_ADMIN_TOKEN";

/// Name of the file in the data dir where `serve` keeps a token it generated.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Reading the token file failed (other than its absence).
#[derive(Debug, thiserror::Error)]
#[error("reading the admin token from {}", path.display())]
pub struct TokenFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The token `given` (trimmed; blank counts as not given), else the contents of
/// `<data_dir>/admin-token` when that file exists, else `None`.
pub fn admin_token(given: Option<&str>, data_dir: &Path) -> Result<Option<String>, TokenFileError> {
    if let Some(token) = given.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(Some(token.to_owned()));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenFileError { path, source }),
    }
}

/// The token in `MLSYSOPS_ADMIN_TOKEN` when set and not blank, else the one in
/// `<data_dir>/admin-token` when that file exists, else `None`.
pub fn admin_token_from_env(data_dir: &Path) -> Result<Option<String>, TokenFileError> {
    admin_token(std::env::var(ADMIN_TOKEN_ENV).ok().as_deref(), data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_flag_then_the_data_dir() {
        let dir = std::env::temp_dir().join(format!("control-api-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(admin_token(None, &dir).unwrap(), None);
        std::fs::write(dir.join(ADMIN_TOKEN_FILE), "from-file\n").unwrap();
        assert_eq!(admin_token(None, &dir).unwrap().as_deref(), Some("from-file"));
        assert_eq!(admin_token(Some("flag"), &dir).unwrap().as_deref(), Some("flag"));
        assert_eq!(admin_token(Some(""), &dir).unwrap().as_deref(), Some("from-file"));
        std::fs::write(dir.join(ADMIN_TOKEN_FILE), " \n").unwrap();
        assert_eq!(admin_token(None, &dir).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
        // A data dir that is a file: not "absent", an error naming the path.
        let file = std::env::temp_dir().join(format!("control-api-token-file-{}", std::process::id()));
        std::fs::write(&file, "x").unwrap();
        let err = admin_token(None, &file).unwrap_err();
        assert!(err.to_string().contains(ADMIN_TOKEN_FILE), "{err}");
        std::fs::remove_file(&file).unwrap();
    }
}
