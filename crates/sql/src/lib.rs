//! Streaming SQL in ksqlDB's language (issue 15). So far: the lexer ([`lexer`]), the syntax
//! tree ([`ast`]), the parser ([`parser`]), values ([`value`]) and expression evaluation
//! ([`eval`]); the engine and the REST API come next. Pure:
//! no sockets, no files, no clocks.

pub mod aggregate;
pub mod analyzer;
pub mod ast;
pub mod catalog;
pub mod datetime;
pub mod eval;
pub mod format;
pub mod functions;
pub mod functions_more;
pub mod join;
pub mod lexer;
pub mod parser;
pub mod pipeline;
pub mod planner;
pub mod value;

pub use parser::{
    parse_expression, parse_statement, parse_statements, parse_statements_with_text,
    split_statements, substitute_variables,
};

/// Errors of the SQL crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// The text is not ksqlDB SQL; `at` is the byte offset where that became clear (inside
    /// the parser; the public entry points turn it into [`SqlError::Syntax`]).
    #[error("at byte {at}: {message}")]
    Parse { at: usize, message: String },
    /// As ksqlDB reports it: `line 1:40: Syntax Error` and what was expected.
    #[error("line {line}:{column}: Syntax Error\n{message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
}

impl SqlError {
    /// A parse error placed as ksqlDB places it (1-based line and column: ANTLR's
    /// position in the line plus one).
    pub(crate) fn located(self, text: &str) -> SqlError {
        match self {
            SqlError::Parse { at, message } => {
                let before = &text[..at.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                SqlError::Syntax {
                    line,
                    column,
                    message,
                }
            }
            other => other,
        }
    }
}
