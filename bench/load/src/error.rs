//! The tool's error type.

/// Why a benchmark could not run or could not be reported.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The command line or a parameter is not usable.
    #[error("{0}")]
    Usage(String),
    /// The target could not be reached or refused the call.
    #[error("cannot reach {url}: {reason}")]
    Connect {
        /// The target URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The target did not behave as a SLIM node must for the benchmark to start.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A result file that is not a `slim-bench/result/v1` document.
    #[error("{path}: not a slim-bench result: {reason}")]
    BadResult {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}
