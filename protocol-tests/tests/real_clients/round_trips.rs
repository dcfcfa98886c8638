//! Cross-language round trips: each client and each worker at least twice.

use super::*;

pub(crate) fn php_client_python_worker(kind: ServerKind) {
    round_trip(kind, Lang::Php, Lang::Python);
}

pub(crate) fn php_client_perl_worker(kind: ServerKind) {
    round_trip(kind, Lang::Php, Lang::Perl);
}

pub(crate) fn python_client_perl_worker(kind: ServerKind) {
    round_trip(kind, Lang::Python, Lang::Perl);
}

pub(crate) fn python_client_cli_worker(kind: ServerKind) {
    round_trip(kind, Lang::Python, Lang::Cli);
}

pub(crate) fn perl_client_cli_worker(kind: ServerKind) {
    round_trip(kind, Lang::Perl, Lang::Cli);
}

pub(crate) fn perl_client_php_worker(kind: ServerKind) {
    round_trip(kind, Lang::Perl, Lang::Php);
}

pub(crate) fn cli_client_php_worker(kind: ServerKind) {
    round_trip(kind, Lang::Cli, Lang::Php);
}

pub(crate) fn cli_client_python_worker(kind: ServerKind) {
    round_trip(kind, Lang::Cli, Lang::Python);
}

// pygearman (PyPI) and node-gearman (npm) against workers and clients in other
// languages.

pub(crate) fn pygearman_client_perl_worker(kind: ServerKind) {
    round_trip(kind, Lang::Pygearman, Lang::Perl);
}

pub(crate) fn python_client_pygearman_worker(kind: ServerKind) {
    round_trip(kind, Lang::Python, Lang::Pygearman);
}

pub(crate) fn node_client_python_worker(kind: ServerKind) {
    round_trip(kind, Lang::Node, Lang::Python);
}

pub(crate) fn perl_client_node_worker(kind: ServerKind) {
    round_trip(kind, Lang::Perl, Lang::Node);
}

pub(crate) fn node_client_pygearman_worker(kind: ServerKind) {
    round_trip(kind, Lang::Node, Lang::Pygearman);
}
