//! What the command line of both profiles shares: exit codes, `--only`/`--skip`/`--cell`
//! patterns, and the check of a node URL. Its own module so that the session profile's command
//! ([`crate::session::cli`]) and the top-level one ([`crate::cli`]) do not import each other.

/// Exit code: conformant.
pub const EXIT_OK: i32 = 0;
/// Exit code: failures.
pub const EXIT_FAIL: i32 = 1;
/// Exit code: harness or usage error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: target unreachable.
pub const EXIT_UNREACHABLE: i32 = 3;

/// Simple glob: `*` matches any run of characters; everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn rec(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| rec(rest, &t[i..])),
            Some((c, rest)) => t
                .split_first()
                .is_some_and(|(d, tt)| c == d && rec(rest, tt)),
        }
    }
    rec(pattern.as_bytes(), text.as_bytes())
}

/// Checks a node URL given with `flag` (`--target`, `--node`) before connecting:
/// `http://HOST:PORT` (h2c) or `https://HOST:PORT` (TLS); the error says what was wrong and what
/// to give instead.
pub fn check_node_url(flag: &str, url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{flag} {url:?} is not a URL ({e}); expected http://HOST:PORT, e.g. http://127.0.0.1:46357"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(format!(
            "{flag} {url:?}: expected http://HOST:PORT (h2c) or https://HOST:PORT (TLS), e.g. http://127.0.0.1:46357"
        )),
    }
}
