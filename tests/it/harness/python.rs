//! The Python tools some tests run for real (ansible-core, openapi-spec-validator), from the
//! virtualenv `scripts/test` creates: `FEDGATE_TEST_VENV`, else
//! `${XDG_CACHE_HOME:-$HOME/.cache}/fedgate-test/venv`, as in `scripts/test`.

use std::path::PathBuf;

fn venv() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FEDGATE_TEST_VENV") {
        return Some(dir.into());
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(cache.join("fedgate-test").join("venv"))
}

/// The virtualenv's `bin/<name>`, or `None` after printing that `test` is skipped because
/// the virtualenv is absent (`scripts/test` always creates it).
pub fn tool(name: &str, test: &str) -> Option<PathBuf> {
    let path = venv().map(|dir| dir.join("bin").join(name));
    match path {
        Some(path) if path.exists() => Some(path),
        _ => {
            let venv = venv().map(|dir| dir.display().to_string());
            eprintln!(
                "SKIPPED {test}: {name} is not installed in {}; scripts/test installs it \
                 (tests/python-requirements.txt)",
                venv.as_deref().unwrap_or("the cache directory (no HOME)")
            );
            None
        }
    }
}
