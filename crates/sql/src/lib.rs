//! Streaming SQL in ksqlDB's language (issue 15). So far: the lexer ([`lexer`]), the syntax
//! tree ([`ast`]), the parser ([`parser`]), values ([`value`]) and expression evaluation
//! ([`eval`]); the engine and the REST API come next. Pure:
//! no sockets, no files, no clocks.

pub mod ast;
pub mod eval;
pub mod format;
pub mod lexer;
pub mod parser;
pub mod value;

pub use parser::{parse_expression, parse_statement, parse_statements};

/// Errors of the SQL crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// The text is not ksqlDB SQL; `at` is the byte offset where that became clear.
    #[error("at byte {at}: {message}")]
    Parse { at: usize, message: String },
}
