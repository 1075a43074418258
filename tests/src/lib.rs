//! Black-box tests live in `tests/`: they start the real `keyledger` binary and speak HTTP.
