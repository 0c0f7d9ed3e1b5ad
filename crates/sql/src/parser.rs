//! A recursive-descent parser for ksqlDB's statements (`SqlBase.g4`'s `statement` rule and
//! everything under it). Keywords are recognized where the grammar expects them; elsewhere a
//! word is an identifier, as ksqlDB's `nonReserved` list allows for many of them (a
//! reserved word as a column name must be quoted, as in ksqlDB).
//!
//! Bounded: expressions nest at most [`DEPTH_MAX`] levels, so hostile input cannot exhaust
//! the stack.

use crate::ast::*;
use crate::lexer::{tokenize, Tok, Token};
use crate::SqlError;

/// How deeply expressions and types may nest.
pub const DEPTH_MAX: usize = 128;

/// Words that cannot be unquoted identifiers (ksqlDB's reserved keywords that appear in
/// places where an identifier could otherwise start).
const RESERVED: &[&str] = &[
    "SELECT",
    "FROM",
    "AS",
    "ALL",
    "DISTINCT",
    "WHERE",
    "WITHIN",
    "WINDOW",
    "GROUP",
    "BY",
    "HAVING",
    "LIMIT",
    "AT",
    "OR",
    "AND",
    "IN",
    "NOT",
    "EXISTS",
    "BETWEEN",
    "LIKE",
    "IS",
    "NULL",
    "TRUE",
    "FALSE",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "JOIN",
    "FULL",
    "OUTER",
    "INNER",
    "LEFT",
    "RIGHT",
    "ON",
    "WITH",
    "VALUES",
    "CREATE",
    "TABLE",
    "TOPIC",
    "STREAM",
    "STREAMS",
    "INSERT",
    "DELETE",
    "INTO",
    "DESCRIBE",
    "EXTENDED",
    "PRINT",
    "CAST",
    "LIST",
    "TOPICS",
    "QUERY",
    "QUERIES",
    "TERMINATE",
    "LOAD",
    "DROP",
    "TO",
    "RENAME",
    "UNSET",
    "RUN",
    "SCRIPT",
    "DECIMAL",
    "CONNECTOR",
    "CONNECTORS",
    "NAMESPACE",
    "MATERIALIZED",
    "VIEW",
    "PROPERTIES",
    "BEGINNING",
    "TUMBLING",
    "HOPPING",
    "SIZE",
    "ADVANCE",
    "RETENTION",
    "SAMPLE",
    "EXPORT",
    "CATALOG",
];

/// Parses one or more statements separated by `;` (a trailing `;` is optional).
pub fn parse_statements(text: &str) -> Result<Vec<Statement>, SqlError> {
    statements(text).map_err(|e| e.located(text))
}

fn statements(text: &str) -> Result<Vec<Statement>, SqlError> {
    Ok(statements_with_text(text)?
        .into_iter()
        .map(|(_, s)| s)
        .collect())
}

/// Parses a script into its statements, each with its own text (from its first token
/// through its `;`), as ksqlDB echoes `statementText` and stores commands.
pub fn parse_statements_with_text(text: &str) -> Result<Vec<(String, Statement)>, SqlError> {
    statements_with_text(text).map_err(|e| e.located(text))
}

fn statements_with_text(text: &str) -> Result<Vec<(String, Statement)>, SqlError> {
    let mut p = Parser::new(text)?;
    let mut out = Vec::new();
    loop {
        while p.eat(&Tok::Semicolon) {}
        if p.done() {
            return Ok(out);
        }
        let start = p.tokens[p.pos].at;
        let statement = p.statement()?;
        if !p.done() && !p.eat(&Tok::Semicolon) {
            return Err(p.unexpected("';' after the statement"));
        }
        let end = p.tokens.get(p.pos).map_or(text.len(), |t| t.at);
        let mut own = text[start..end].trim_end().to_string();
        if !own.ends_with(';') {
            own.push(';');
        }
        out.push((own, statement));
    }
}

/// Complete statements (each with its `;`) and what follows the last one. Quotes,
/// backticks and `--` comments are respected.
pub fn split_statements(text: &str) -> (Vec<String>, String) {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                current.push(c);
                if c == q {
                    if chars.peek() == Some(&q) {
                        current.push(chars.next().expect("peeked"));
                    } else {
                        quote = None;
                    }
                }
            }
            None => match c {
                '\'' | '"' | '`' => {
                    quote = Some(c);
                    current.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            current.push('\n');
                            break;
                        }
                    }
                }
                ';' => {
                    current.push(';');
                    let s = current.trim().to_string();
                    if s != ";" {
                        statements.push(s);
                    }
                    current.clear();
                }
                _ => current.push(c),
            },
        }
    }
    (statements, current)
}

/// Replaces `${name}` by the variable's value (names are case-insensitive), in
/// identifiers and literals alike, as ksqlDB's variable substitution does. An undefined
/// variable is left as written (the parser then reports it).
pub fn substitute_variables(
    text: &str,
    variables: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end) => {
                let name = after[..end].trim().to_ascii_uppercase();
                match variables.get(&name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[at..at + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses exactly one statement (with or without its `;`).
pub fn parse_statement(text: &str) -> Result<Statement, SqlError> {
    let mut all = parse_statements(text)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(SqlError::Parse {
            at: 0,
            message: "no statement".into(),
        }),
        n => Err(SqlError::Parse {
            at: 0,
            message: format!("expected one statement, got {n}"),
        }),
    }
}

/// Parses a lone expression (tests, and `WHERE` text from the REST API).
pub fn parse_expression(text: &str) -> Result<Expr, SqlError> {
    let parse = || {
        let mut p = Parser::new(text)?;
        let e = p.expr()?;
        if !p.done() {
            return Err(p.unexpected("the end of the expression"));
        }
        Ok(e)
    };
    parse().map_err(|e| e.located(text))
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Parser, SqlError> {
        Ok(Parser {
            tokens: tokenize(text)?,
            pos: 0,
            end: text.len(),
            depth: 0,
        })
    }

    fn done(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.kind)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.tokens.get(self.pos + n).map(|t| &t.kind)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |t| t.at)
    }

    fn unexpected(&self, wanted: &str) -> SqlError {
        let found = match self.peek() {
            Some(t) => format!("'{t}'"),
            None => "the end of the text".into(),
        };
        SqlError::Parse {
            at: self.at(),
            message: format!("expected {wanted} but found {found}"),
        }
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok) -> Result<(), SqlError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{t}'")))
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w == kw)
    }

    fn is_kw_at(&self, n: usize, kw: &str) -> bool {
        matches!(self.peek_at(n), Some(Tok::Word(w)) if w == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected(kw))
        }
    }

    /// An identifier: an unreserved word, a quoted or digit identifier, or a variable.
    fn ident(&mut self) -> Result<String, SqlError> {
        let name = match self.peek() {
            Some(Tok::Word(w)) if !RESERVED.contains(&w.as_str()) => w.clone(),
            Some(Tok::Quoted(q)) => q.clone(),
            Some(Tok::DigitIdentifier(d)) => d.clone(),
            Some(Tok::Variable(v)) => format!("${{{v}}}"),
            _ => return Err(self.unexpected("an identifier")),
        };
        self.pos += 1;
        Ok(name)
    }

    fn string(&mut self) -> Result<String, SqlError> {
        match self.peek() {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.unexpected("a string literal")),
        }
    }

    /// `number`: an optionally negative integer.
    fn integer(&mut self) -> Result<i64, SqlError> {
        let negative = self.eat(&Tok::Minus);
        match self.peek() {
            Some(Tok::Integer(n)) => {
                let at = self.at();
                let v: i64 = n.parse().map_err(|_| SqlError::Parse {
                    at,
                    message: format!("{n} is out of range"),
                })?;
                self.pos += 1;
                Ok(if negative { -v } else { v })
            }
            _ => Err(self.unexpected("a whole number")),
        }
    }

    fn enter(&mut self) -> Result<(), SqlError> {
        self.depth += 1;
        if self.depth > DEPTH_MAX {
            return Err(SqlError::Parse {
                at: self.at(),
                message: format!("nested deeper than {DEPTH_MAX} levels"),
            });
        }
        Ok(())
    }

    // ---- statements ----

    fn statement(&mut self) -> Result<Statement, SqlError> {
        let Some(Tok::Word(first)) = self.peek().cloned() else {
            return Err(self.unexpected("a statement"));
        };
        match first.as_str() {
            "SELECT" => Ok(Statement::Query(self.query()?)),
            "CREATE" => self.create(),
            "INSERT" => self.insert(),
            "DROP" => self.drop(),
            "TERMINATE" => {
                self.pos += 1;
                if self.eat_kw("ALL") {
                    Ok(Statement::Terminate { query_id: None })
                } else {
                    Ok(Statement::Terminate {
                        query_id: Some(self.ident()?),
                    })
                }
            }
            "LIST" | "SHOW" => self.list(),
            "DESCRIBE" => self.describe(),
            "EXPLAIN" => {
                self.pos += 1;
                let is_statement = matches!(self.peek(), Some(Tok::Word(w)) if ["SELECT", "CREATE", "INSERT"].contains(&w.as_str()));
                if is_statement {
                    Ok(Statement::Explain(Box::new(ExplainTarget::Statement(
                        Box::new(self.statement()?),
                    ))))
                } else {
                    Ok(Statement::Explain(Box::new(ExplainTarget::QueryId(
                        self.ident()?,
                    ))))
                }
            }
            "PRINT" => self.print(),
            "SET" => {
                self.pos += 1;
                let name = self.string_or_variable()?;
                self.expect(&Tok::Eq)?;
                let value = self.string_or_variable()?;
                Ok(Statement::SetProperty { name, value })
            }
            "UNSET" => {
                self.pos += 1;
                Ok(Statement::UnsetProperty {
                    name: self.string_or_variable()?,
                })
            }
            "DEFINE" => {
                self.pos += 1;
                let name = self.ident()?;
                self.expect(&Tok::Eq)?;
                Ok(Statement::Define {
                    name,
                    value: self.string()?,
                })
            }
            "UNDEFINE" => {
                self.pos += 1;
                Ok(Statement::Undefine {
                    name: self.ident()?,
                })
            }
            "RUN" => {
                self.pos += 1;
                self.expect_kw("SCRIPT")?;
                Ok(Statement::RunScript {
                    path: self.string()?,
                })
            }
            _ => Err(self.unexpected("a statement")),
        }
    }

    fn string_or_variable(&mut self) -> Result<String, SqlError> {
        match self.peek() {
            Some(Tok::Variable(v)) => {
                let v = format!("${{{v}}}");
                self.pos += 1;
                Ok(v)
            }
            _ => self.string(),
        }
    }

    fn create(&mut self) -> Result<Statement, SqlError> {
        self.expect_kw("CREATE")?;
        if self.eat_kw("TYPE") {
            let if_not_exists = self.if_not_exists()?;
            let name = self.ident()?;
            self.expect_kw("AS")?;
            return Ok(Statement::CreateType {
                if_not_exists,
                name,
                sql_type: self.sql_type()?,
            });
        }
        let or_replace = if self.eat_kw("OR") {
            self.expect_kw("REPLACE")?;
            true
        } else {
            false
        };
        let source = self.eat_kw("SOURCE");
        let kind = if self.eat_kw("STREAM") {
            SourceKind::Stream
        } else if self.eat_kw("TABLE") {
            SourceKind::Table
        } else {
            return Err(self.unexpected("STREAM or TABLE"));
        };
        let if_not_exists = self.if_not_exists()?;
        let name = self.ident()?;
        let columns = if self.peek() == Some(&Tok::LParen) {
            self.column_defs()?
        } else {
            Vec::new()
        };
        let properties = self.with_properties()?;
        if self.eat_kw("AS") {
            if source || !columns.is_empty() {
                return Err(self.unexpected("no column list or SOURCE with AS SELECT"));
            }
            return Ok(Statement::CreateAsSelect {
                kind,
                or_replace,
                if_not_exists,
                name,
                properties,
                query: self.query()?,
            });
        }
        Ok(Statement::CreateSource {
            kind,
            or_replace,
            source,
            if_not_exists,
            name,
            columns,
            properties,
        })
    }

    fn if_not_exists(&mut self) -> Result<bool, SqlError> {
        if self.is_kw("IF") && self.is_kw_at(1, "NOT") {
            self.pos += 2;
            self.expect_kw("EXISTS")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn if_exists(&mut self) -> Result<bool, SqlError> {
        if self.is_kw("IF") && self.is_kw_at(1, "EXISTS") {
            self.pos += 2;
            return Ok(true);
        }
        Ok(false)
    }

    fn column_defs(&mut self) -> Result<Vec<ColumnDef>, SqlError> {
        self.expect(&Tok::LParen)?;
        let mut out = Vec::new();
        loop {
            let name = self.ident()?;
            let sql_type = self.sql_type()?;
            let mut header = None;
            let constraint = if self.eat_kw("PRIMARY") {
                self.expect_kw("KEY")?;
                ColumnConstraint::PrimaryKey
            } else if self.eat_kw("KEY") {
                ColumnConstraint::Key
            } else if self.eat_kw("HEADERS") {
                ColumnConstraint::Headers
            } else if self.eat_kw("HEADER") {
                self.expect(&Tok::LParen)?;
                header = Some(self.string()?);
                self.expect(&Tok::RParen)?;
                ColumnConstraint::None
            } else {
                ColumnConstraint::None
            };
            out.push(ColumnDef {
                name,
                sql_type,
                constraint,
                header,
            });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        if !self.eat(&Tok::RParen) {
            // ANTLR's wording in ksqlDB: the element list goes on or ends.
            return Err(SqlError::Parse {
                at: self.at(),
                message: "Expecting {',', ')'}".into(),
            });
        }
        Ok(out)
    }

    /// A simple type's parameters, `(n, …)` (ksqlDB's grammar: INTEGER_VALUE or STRING
    /// each); how many there were.
    fn type_parameters(&mut self) -> Result<usize, SqlError> {
        if !self.eat(&Tok::LParen) {
            return Ok(0);
        }
        let mut n = 0;
        loop {
            match self.peek() {
                Some(Tok::Integer(_)) => self.pos += 1,
                Some(Tok::Word(w)) if w == "STRING" => self.pos += 1,
                _ => {
                    return Err(SqlError::Parse {
                        at: self.at(),
                        message: "Expecting {'STRING', INTEGER_VALUE}".into(),
                    })
                }
            }
            n += 1;
            if self.eat(&Tok::Comma) {
                continue;
            }
            if self.eat(&Tok::RParen) {
                return Ok(n);
            }
            return Err(SqlError::Parse {
                at: self.at(),
                message: "Expecting {',', ')'}".into(),
            });
        }
    }

    fn with_properties(&mut self) -> Result<Properties, SqlError> {
        if !self.eat_kw("WITH") {
            return Ok(Vec::new());
        }
        self.expect(&Tok::LParen)?;
        let mut out = Vec::new();
        loop {
            let name = match self.peek() {
                Some(Tok::Str(s)) => {
                    let s = s.to_ascii_uppercase();
                    self.pos += 1;
                    s
                }
                _ => self.ident()?.to_ascii_uppercase(),
            };
            self.expect(&Tok::Eq)?;
            let value = match self.primary()? {
                Expr::Literal(l) => l,
                Expr::Variable(v) => Literal::String(format!("${{{v}}}")),
                _ => return Err(self.unexpected("a literal property value")),
            };
            out.push((name, value));
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen)?;
        Ok(out)
    }

    fn insert(&mut self) -> Result<Statement, SqlError> {
        self.expect_kw("INSERT")?;
        self.expect_kw("INTO")?;
        let target = self.ident()?;
        if self.is_kw("WITH") || self.is_kw("SELECT") {
            let properties = self.with_properties()?;
            return Ok(Statement::InsertInto {
                target,
                properties,
                query: self.query()?,
            });
        }
        let mut columns = Vec::new();
        if self.eat(&Tok::LParen) {
            loop {
                columns.push(self.ident()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen)?;
        }
        self.expect_kw("VALUES")?;
        self.expect(&Tok::LParen)?;
        let mut values = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                values.push(self.value_expr()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen)?;
        }
        Ok(Statement::InsertValues {
            target,
            columns,
            values,
        })
    }

    fn drop(&mut self) -> Result<Statement, SqlError> {
        self.expect_kw("DROP")?;
        if self.eat_kw("TYPE") {
            let if_exists = self.if_exists()?;
            return Ok(Statement::DropType {
                if_exists,
                name: self.ident()?,
            });
        }
        let kind = if self.eat_kw("STREAM") {
            SourceKind::Stream
        } else if self.eat_kw("TABLE") {
            SourceKind::Table
        } else {
            return Err(self.unexpected("STREAM, TABLE or TYPE"));
        };
        let if_exists = self.if_exists()?;
        let name = self.ident()?;
        let delete_topic = if self.eat_kw("DELETE") {
            self.expect_kw("TOPIC")?;
            true
        } else {
            false
        };
        Ok(Statement::Drop {
            kind,
            if_exists,
            name,
            delete_topic,
        })
    }

    fn list(&mut self) -> Result<Statement, SqlError> {
        self.pos += 1; // LIST or SHOW
        let Some(Tok::Word(what)) = self.peek().cloned() else {
            return Err(self.unexpected("what to list"));
        };
        self.pos += 1;
        Ok(match what.as_str() {
            "STREAMS" => Statement::ListStreams {
                extended: self.eat_kw("EXTENDED"),
            },
            "TABLES" => Statement::ListTables {
                extended: self.eat_kw("EXTENDED"),
            },
            "ALL" => {
                self.expect_kw("TOPICS")?;
                Statement::ListTopics {
                    all: true,
                    extended: self.eat_kw("EXTENDED"),
                }
            }
            "TOPICS" => Statement::ListTopics {
                all: false,
                extended: self.eat_kw("EXTENDED"),
            },
            "QUERIES" => Statement::ListQueries {
                extended: self.eat_kw("EXTENDED"),
            },
            "PROPERTIES" => Statement::ListProperties,
            "FUNCTIONS" => Statement::ListFunctions,
            "TYPES" => Statement::ListTypes,
            "VARIABLES" => Statement::ListVariables,
            _ => {
                self.pos -= 1;
                return Err(self.unexpected(
                    "STREAMS, TABLES, TOPICS, QUERIES, PROPERTIES, FUNCTIONS, TYPES or VARIABLES",
                ));
            }
        })
    }

    fn describe(&mut self) -> Result<Statement, SqlError> {
        self.expect_kw("DESCRIBE")?;
        if self.is_kw("STREAMS") && !matches!(self.peek_at(1), Some(Tok::Semicolon) | None)
            || self.is_kw("STREAMS")
        {
            self.pos += 1;
            return Ok(Statement::DescribeStreams {
                extended: self.eat_kw("EXTENDED"),
            });
        }
        if self.is_kw("FUNCTION") && self.peek_at(1).is_some_and(|t| *t != Tok::Semicolon) {
            self.pos += 1;
            return Ok(Statement::DescribeFunction {
                name: self.ident()?,
            });
        }
        let name = self.ident()?;
        Ok(Statement::Describe {
            name,
            extended: self.eat_kw("EXTENDED"),
        })
    }

    fn print(&mut self) -> Result<Statement, SqlError> {
        self.expect_kw("PRINT")?;
        let topic = match self.peek() {
            Some(Tok::Str(_)) => self.string()?,
            _ => self.ident()?,
        };
        let from_beginning = if self.eat_kw("FROM") {
            self.expect_kw("BEGINNING")?;
            true
        } else {
            false
        };
        let interval = if self.eat_kw("INTERVAL") || self.eat_kw("SAMPLE") {
            Some(self.integer()?)
        } else {
            None
        };
        let limit = if self.eat_kw("LIMIT") {
            Some(self.integer()?)
        } else {
            None
        };
        Ok(Statement::Print {
            topic,
            from_beginning,
            interval,
            limit,
        })
    }

    // ---- queries ----

    fn query(&mut self) -> Result<Query, SqlError> {
        self.expect_kw("SELECT")?;
        let mut select = Vec::new();
        loop {
            select.push(self.select_item()?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect_kw("FROM")?;
        let from = self.ident()?;
        let from_alias = self.alias()?;
        let mut joins = Vec::new();
        loop {
            let kind = if self.eat_kw("JOIN") {
                JoinType::Inner
            } else if self.is_kw("INNER") {
                self.pos += 1;
                self.expect_kw("JOIN")?;
                JoinType::Inner
            } else if self.is_kw("LEFT") || self.is_kw("RIGHT") || self.is_kw("FULL") {
                let kind = match self.peek() {
                    Some(Tok::Word(w)) if w == "LEFT" => JoinType::Left,
                    Some(Tok::Word(w)) if w == "RIGHT" => JoinType::Right,
                    _ => JoinType::Full,
                };
                self.pos += 1;
                self.eat_kw("OUTER");
                self.expect_kw("JOIN")?;
                kind
            } else {
                break;
            };
            let source = self.ident()?;
            let alias = self.alias()?;
            let within = if self.eat_kw("WITHIN") {
                let (before, after) = if self.eat(&Tok::LParen) {
                    let before = self.duration()?;
                    self.expect(&Tok::Comma)?;
                    let after = self.duration()?;
                    self.expect(&Tok::RParen)?;
                    (before, after)
                } else {
                    let d = self.duration()?;
                    (d, d)
                };
                let grace = self.grace()?;
                Some((before, after, grace))
            } else {
                None
            };
            self.expect_kw("ON")?;
            let on = self.expr()?;
            joins.push(Join {
                kind,
                source,
                alias,
                within,
                on,
            });
        }
        let window = if self.eat_kw("WINDOW") {
            Some(self.window()?)
        } else {
            None
        };
        let where_clause = if self.eat_kw("WHERE") {
            Some(magic_timestamps(&self.expr()?))
        } else {
            None
        };
        let group_by = if self.eat_kw("GROUP") {
            self.expect_kw("BY")?;
            self.expr_list()?
        } else {
            Vec::new()
        };
        let partition_by = if self.eat_kw("PARTITION") {
            self.expect_kw("BY")?;
            self.expr_list()?
        } else {
            Vec::new()
        };
        let having = if self.eat_kw("HAVING") {
            Some(self.expr()?)
        } else {
            None
        };
        let emit = if self.eat_kw("EMIT") {
            if self.eat_kw("CHANGES") {
                Some(Emit::Changes)
            } else if self.eat_kw("FINAL") {
                Some(Emit::Final)
            } else {
                return Err(self.unexpected("CHANGES or FINAL"));
            }
        } else {
            None
        };
        let limit = if self.eat_kw("LIMIT") {
            Some(self.integer()?)
        } else {
            None
        };
        Ok(Query {
            select,
            from,
            from_alias,
            joins,
            window,
            where_clause,
            group_by,
            partition_by,
            having,
            emit,
            limit,
        })
    }

    /// `[AS] alias` after a source, if one follows.
    fn alias(&mut self) -> Result<Option<String>, SqlError> {
        if self.eat_kw("AS") {
            return Ok(Some(self.ident()?));
        }
        match self.peek() {
            Some(Tok::Word(w)) if !RESERVED.contains(&w.as_str()) && !is_clause_word(w) => {
                Ok(Some(self.ident()?))
            }
            Some(Tok::Quoted(_)) => Ok(Some(self.ident()?)),
            _ => Ok(None),
        }
    }

    fn expr_list(&mut self) -> Result<Vec<Expr>, SqlError> {
        // `GROUP BY (a, b)` and `GROUP BY ()` as well as `GROUP BY a, b`.
        if self.peek() == Some(&Tok::LParen) {
            let save = self.pos;
            self.pos += 1;
            if self.eat(&Tok::RParen) {
                return Ok(Vec::new());
            }
            let first = self.expr()?;
            if self.peek() == Some(&Tok::Comma) {
                let mut out = vec![first];
                while self.eat(&Tok::Comma) {
                    out.push(self.expr()?);
                }
                self.expect(&Tok::RParen)?;
                return Ok(out);
            }
            self.pos = save;
        }
        let mut out = vec![self.value_expr()?];
        while self.eat(&Tok::Comma) {
            out.push(self.value_expr()?);
        }
        Ok(out)
    }

    fn select_item(&mut self) -> Result<SelectItem, SqlError> {
        if self.eat(&Tok::Asterisk) {
            return Ok(SelectItem::All { source: None });
        }
        // `source.*`
        if self.peek_at(1) == Some(&Tok::Dot) && self.peek_at(2) == Some(&Tok::Asterisk) {
            let source = self.ident()?;
            self.pos += 2;
            return Ok(SelectItem::All {
                source: Some(source),
            });
        }
        let expr = self.expr()?;
        if let Expr::Dereference { base, field } = &expr {
            if field == "*" {
                return Ok(SelectItem::StructAll((**base).clone()));
            }
        }
        let alias = if self.eat_kw("AS") {
            Some(self.ident()?)
        } else {
            match self.peek() {
                Some(Tok::Word(w)) if !RESERVED.contains(&w.as_str()) && !is_clause_word(w) => {
                    Some(self.ident()?)
                }
                Some(Tok::Quoted(_)) => Some(self.ident()?),
                _ => None,
            }
        };
        Ok(SelectItem::Expr { expr, alias })
    }

    fn window(&mut self) -> Result<Window, SqlError> {
        // An optional window name before its kind (`WINDOW w SESSION (…)`).
        let is_kind = |t: Option<&Tok>| matches!(t, Some(Tok::Word(w)) if ["TUMBLING", "HOPPING", "SESSION"].contains(&w.as_str()));
        if !is_kind(self.peek()) && is_kind(self.peek_at(1)) {
            self.ident()?;
        }
        let kind_word = match self.peek() {
            Some(Tok::Word(w)) => w.clone(),
            _ => return Err(self.unexpected("TUMBLING, HOPPING or SESSION")),
        };
        self.pos += 1;
        self.expect(&Tok::LParen)?;
        let kind = match kind_word.as_str() {
            "TUMBLING" => {
                self.expect_kw("SIZE")?;
                WindowKind::Tumbling {
                    size: self.duration()?,
                }
            }
            "HOPPING" => {
                self.expect_kw("SIZE")?;
                let size = self.duration()?;
                self.expect(&Tok::Comma)?;
                self.expect_kw("ADVANCE")?;
                self.expect_kw("BY")?;
                WindowKind::Hopping {
                    size,
                    advance: self.duration()?,
                }
            }
            "SESSION" => WindowKind::Session {
                gap: self.duration()?,
            },
            _ => {
                self.pos -= 2;
                return Err(self.unexpected("TUMBLING, HOPPING or SESSION"));
            }
        };
        let mut retention = None;
        let mut grace = None;
        while self.eat(&Tok::Comma) {
            if self.eat_kw("RETENTION") {
                retention = Some(self.duration()?);
            } else if let Some(g) = self.grace()? {
                grace = Some(g);
            } else {
                return Err(self.unexpected("RETENTION or GRACE PERIOD"));
            }
        }
        self.expect(&Tok::RParen)?;
        Ok(Window {
            kind,
            retention,
            grace,
        })
    }

    fn grace(&mut self) -> Result<Option<Duration>, SqlError> {
        if self.eat_kw("GRACE") {
            self.expect_kw("PERIOD")?;
            return Ok(Some(self.duration()?));
        }
        Ok(None)
    }

    fn duration(&mut self) -> Result<Duration, SqlError> {
        let amount = self.integer()?;
        let unit = self
            .time_unit()
            .ok_or_else(|| self.unexpected("a time unit (MILLISECONDS … DAYS)"))?;
        Ok(Duration { amount, unit })
    }

    fn time_unit(&mut self) -> Option<TimeUnit> {
        let unit = match self.peek() {
            Some(Tok::Word(w)) => match w.as_str() {
                "MILLISECOND" | "MILLISECONDS" => TimeUnit::Milliseconds,
                "SECOND" | "SECONDS" => TimeUnit::Seconds,
                "MINUTE" | "MINUTES" => TimeUnit::Minutes,
                "HOUR" | "HOURS" => TimeUnit::Hours,
                "DAY" | "DAYS" => TimeUnit::Days,
                _ => return None,
            },
            _ => return None,
        };
        self.pos += 1;
        Some(unit)
    }

    // ---- expressions ----

    pub(crate) fn expr(&mut self) -> Result<Expr, SqlError> {
        self.enter()?;
        let e = self.or_expr();
        self.depth -= 1;
        e
    }

    /// A left-associative chain `next (op next)*`, the operator read by `op_of` (which
    /// consumes it).
    fn chain(
        &mut self,
        next: fn(&mut Self) -> Result<Expr, SqlError>,
        op_of: fn(&mut Self) -> Option<BinaryOp>,
    ) -> Result<Expr, SqlError> {
        let mut left = next(self)?;
        while let Some(op) = op_of(self) {
            let right = next(self)?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    /// The operator at the current token among `ops`, consumed.
    fn symbol(&mut self, ops: &[(Tok, BinaryOp)]) -> Option<BinaryOp> {
        let op = ops.iter().find(|(t, _)| self.peek() == Some(t))?.1;
        self.pos += 1;
        Some(op)
    }

    fn or_expr(&mut self) -> Result<Expr, SqlError> {
        self.chain(Self::and_expr, |p| p.eat_kw("OR").then_some(BinaryOp::Or))
    }

    fn and_expr(&mut self) -> Result<Expr, SqlError> {
        self.chain(Self::not_expr, |p| p.eat_kw("AND").then_some(BinaryOp::And))
    }

    fn not_expr(&mut self) -> Result<Expr, SqlError> {
        if self.eat_kw("NOT") {
            self.enter()?;
            let inner = self.not_expr();
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner?)));
        }
        self.predicated()
    }

    fn predicated(&mut self) -> Result<Expr, SqlError> {
        let value = self.value_expr()?;
        let op = match self.peek() {
            Some(Tok::Eq) => Some(BinaryOp::Eq),
            Some(Tok::Neq) => Some(BinaryOp::Neq),
            Some(Tok::Lt) => Some(BinaryOp::Lt),
            Some(Tok::Lte) => Some(BinaryOp::Lte),
            Some(Tok::Gt) => Some(BinaryOp::Gt),
            Some(Tok::Gte) => Some(BinaryOp::Gte),
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 1;
            let right = self.value_expr()?;
            return Ok(Expr::Binary {
                op,
                left: Box::new(value),
                right: Box::new(right),
            });
        }
        if self.eat_kw("IS") {
            let negated = self.eat_kw("NOT");
            if self.eat_kw("NULL") {
                return Ok(Expr::IsNull {
                    expr: Box::new(value),
                    negated,
                });
            }
            self.expect_kw("DISTINCT")?;
            self.expect_kw("FROM")?;
            let right = self.value_expr()?;
            return Ok(Expr::IsDistinctFrom {
                left: Box::new(value),
                right: Box::new(right),
                negated,
            });
        }
        let negated = if self.is_kw("NOT")
            && (self.is_kw_at(1, "BETWEEN") || self.is_kw_at(1, "IN") || self.is_kw_at(1, "LIKE"))
        {
            self.pos += 1;
            true
        } else {
            false
        };
        if self.eat_kw("BETWEEN") {
            let low = self.value_expr()?;
            self.expect_kw("AND")?;
            let high = self.value_expr()?;
            return Ok(Expr::Between {
                expr: Box::new(value),
                low: Box::new(low),
                high: Box::new(high),
                negated,
            });
        }
        if self.eat_kw("IN") {
            self.expect(&Tok::LParen)?;
            let mut list = vec![self.expr()?];
            while self.eat(&Tok::Comma) {
                list.push(self.expr()?);
            }
            self.expect(&Tok::RParen)?;
            return Ok(Expr::InList {
                expr: Box::new(value),
                list,
                negated,
            });
        }
        if self.eat_kw("LIKE") {
            let pattern = self.value_expr()?;
            let escape = if self.eat_kw("ESCAPE") {
                Some(self.string()?)
            } else {
                None
            };
            return Ok(Expr::Like {
                expr: Box::new(value),
                pattern: Box::new(pattern),
                escape,
                negated,
            });
        }
        if negated {
            return Err(self.unexpected("BETWEEN, IN or LIKE"));
        }
        Ok(value)
    }

    fn value_expr(&mut self) -> Result<Expr, SqlError> {
        self.enter()?;
        let e = self.concat_expr();
        self.depth -= 1;
        e
    }

    fn concat_expr(&mut self) -> Result<Expr, SqlError> {
        self.chain(Self::additive, |p| {
            p.symbol(&[(Tok::Concat, BinaryOp::Concat)])
        })
    }

    fn additive(&mut self) -> Result<Expr, SqlError> {
        self.chain(Self::multiplicative, |p| {
            p.symbol(&[(Tok::Plus, BinaryOp::Add), (Tok::Minus, BinaryOp::Subtract)])
        })
    }

    fn multiplicative(&mut self) -> Result<Expr, SqlError> {
        self.chain(Self::unary, |p| {
            p.symbol(&[
                (Tok::Asterisk, BinaryOp::Multiply),
                (Tok::Slash, BinaryOp::Divide),
                (Tok::Percent, BinaryOp::Modulus),
            ])
        })
    }

    fn unary(&mut self) -> Result<Expr, SqlError> {
        // A negative number literal is read with its sign (so BIGINT's smallest value can
        // be written, and an overflow is reported as written).
        if self.peek() == Some(&Tok::Minus) {
            let at = self.at();
            match self.tokens.get(self.pos + 1).map(|t| &t.kind) {
                Some(Tok::Integer(n)) => {
                    let text = format!("-{n}");
                    self.pos += 2;
                    return text
                        .parse::<i64>()
                        .map(|v| Expr::Literal(Literal::Integer(v)))
                        .map_err(|_| SqlError::Parse {
                            at,
                            message: format!("Invalid numeric literal: {text}"),
                        });
                }
                Some(Tok::Float(f)) => {
                    let text = format!("-{f}");
                    self.pos += 2;
                    return text
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .map(|v| Expr::Literal(Literal::Double(v)))
                        .ok_or_else(|| SqlError::Parse {
                            at,
                            message: format!("Number overflows DOUBLE: {text}"),
                        });
                }
                _ => {}
            }
        }
        if self.eat(&Tok::Minus) {
            self.enter()?;
            let inner = self.unary();
            self.depth -= 1;
            return Ok(match inner? {
                // A negative number literal, as ksqlDB's grammar reads `-1`.
                Expr::Literal(Literal::Integer(n)) => Expr::Literal(Literal::Integer(-n)),
                Expr::Literal(Literal::Decimal(d)) => {
                    Expr::Literal(Literal::Decimal(format!("-{d}")))
                }
                Expr::Literal(Literal::Double(d)) => Expr::Literal(Literal::Double(-d)),
                other => Expr::Negate(Box::new(other)),
            });
        }
        if self.eat(&Tok::Plus) {
            return self.unary();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, SqlError> {
        let mut e = self.primary()?;
        loop {
            if self.eat(&Tok::LBracket) {
                let index = self.value_expr()?;
                self.expect(&Tok::RBracket)?;
                e = Expr::Subscript {
                    base: Box::new(e),
                    index: Box::new(index),
                };
            } else if self.eat(&Tok::Arrow) {
                let field = if self.eat(&Tok::Asterisk) {
                    "*".to_string()
                } else {
                    self.ident()?
                };
                e = Expr::Dereference {
                    base: Box::new(e),
                    field,
                };
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, SqlError> {
        let at = self.at();
        let Some(tok) = self.peek().cloned() else {
            return Err(self.unexpected("an expression"));
        };
        match tok {
            Tok::Integer(n) => {
                self.pos += 1;
                let v: i64 = n.parse().map_err(|_| SqlError::Parse {
                    at,
                    message: format!("Invalid numeric literal: {n}"),
                })?;
                Ok(Expr::Literal(Literal::Integer(v)))
            }
            Tok::Decimal(d) => {
                self.pos += 1;
                Ok(Expr::Literal(Literal::Decimal(d)))
            }
            Tok::Float(f) => {
                self.pos += 1;
                let v: f64 = f
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| SqlError::Parse {
                        at,
                        message: format!("Number overflows DOUBLE: {f}"),
                    })?;
                Ok(Expr::Literal(Literal::Double(v)))
            }
            Tok::Str(s) => {
                self.pos += 1;
                Ok(Expr::Literal(Literal::String(s)))
            }
            Tok::Variable(v) => {
                self.pos += 1;
                Ok(Expr::Variable(v))
            }
            Tok::LParen => {
                // A lambda with several parameters: `(x, y) => …`.
                if let Some(lambda) = self.try_lambda()? {
                    return Ok(lambda);
                }
                self.pos += 1;
                let e = self.expr()?;
                self.expect(&Tok::RParen)?;
                Ok(e)
            }
            Tok::Word(w) => self.word_expression(w),
            Tok::Quoted(_) | Tok::DigitIdentifier(_) => self.column_or_call(),
            _ => Err(self.unexpected("an expression")),
        }
    }

    fn word_expression(&mut self, w: String) -> Result<Expr, SqlError> {
        match w.as_str() {
            "NULL" => {
                self.pos += 1;
                Ok(Expr::Literal(Literal::Null))
            }
            "TRUE" | "FALSE" => {
                self.pos += 1;
                Ok(Expr::Literal(Literal::Boolean(w == "TRUE")))
            }
            "CASE" => self.case(),
            "CAST" => {
                self.pos += 1;
                self.expect(&Tok::LParen)?;
                let expr = self.expr()?;
                self.expect_kw("AS")?;
                let to = self.sql_type()?;
                self.expect(&Tok::RParen)?;
                Ok(Expr::Cast {
                    expr: Box::new(expr),
                    to,
                })
            }
            "ARRAY" if self.peek_at(1) == Some(&Tok::LBracket) => {
                self.pos += 2;
                let mut items = Vec::new();
                if !self.eat(&Tok::RBracket) {
                    loop {
                        items.push(self.expr()?);
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    self.expect(&Tok::RBracket)?;
                }
                Ok(Expr::Array(items))
            }
            "MAP" if self.peek_at(1) == Some(&Tok::LParen) => {
                self.pos += 2;
                let mut entries = Vec::new();
                if !self.eat(&Tok::RParen) {
                    loop {
                        let k = self.expr()?;
                        self.expect(&Tok::Assign)?;
                        let v = self.expr()?;
                        entries.push((k, v));
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    self.expect(&Tok::RParen)?;
                }
                Ok(Expr::Map(entries))
            }
            "STRUCT" if self.peek_at(1) == Some(&Tok::LParen) => {
                self.pos += 2;
                let mut fields = Vec::new();
                if !self.eat(&Tok::RParen) {
                    loop {
                        let name = self.ident()?;
                        self.expect(&Tok::Assign)?;
                        fields.push((name, self.expr()?));
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    self.expect(&Tok::RParen)?;
                }
                Ok(Expr::Struct(fields))
            }
            _ => {
                // `TIMESTAMP '…'`: a type name followed by a string.
                if let Some(Tok::Str(value)) = self.peek_at(1).cloned() {
                    if !RESERVED.contains(&w.as_str()) {
                        self.pos += 2;
                        return Ok(Expr::TypedLiteral {
                            type_name: w,
                            value,
                        });
                    }
                }
                if self.peek_at(1) == Some(&Tok::Lambda) {
                    let param = self.ident()?;
                    self.pos += 1;
                    return Ok(Expr::Lambda {
                        params: vec![param],
                        body: Box::new(self.expr()?),
                    });
                }
                self.column_or_call()
            }
        }
    }

    /// `(a, b) => body` at the current `(`, or None (nothing consumed) if it is not one.
    fn try_lambda(&mut self) -> Result<Option<Expr>, SqlError> {
        let save = self.pos;
        self.pos += 1;
        let mut params = Vec::new();
        loop {
            match self.ident() {
                Ok(p) => params.push(p),
                Err(_) => {
                    self.pos = save;
                    return Ok(None);
                }
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        if !(self.eat(&Tok::RParen) && self.eat(&Tok::Lambda)) {
            self.pos = save;
            return Ok(None);
        }
        Ok(Some(Expr::Lambda {
            params,
            body: Box::new(self.expr()?),
        }))
    }

    fn column_or_call(&mut self) -> Result<Expr, SqlError> {
        let name = self.ident()?;
        if self.eat(&Tok::LParen) {
            if self.eat(&Tok::Asterisk) {
                self.expect(&Tok::RParen)?;
                return Ok(Expr::Function {
                    name,
                    args: Vec::new(),
                    star: true,
                });
            }
            let mut args = Vec::new();
            if !self.eat(&Tok::RParen) {
                loop {
                    let save = self.pos;
                    // A window unit as an argument (`TIMESTAMPADD(SECONDS, …)`).
                    let unit = self.time_unit();
                    match unit {
                        Some(u) if matches!(self.peek(), Some(Tok::Comma | Tok::RParen)) => {
                            args.push(Expr::Unit(u))
                        }
                        _ => {
                            self.pos = save;
                            args.push(self.expr()?);
                        }
                    }
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                self.expect(&Tok::RParen)?;
            }
            return Ok(Expr::Function {
                name,
                args,
                star: false,
            });
        }
        if self.peek() == Some(&Tok::Dot) && self.peek_at(1) != Some(&Tok::Asterisk) {
            self.pos += 1;
            let column = self.ident()?;
            return Ok(Expr::Column {
                source: Some(name),
                name: column,
            });
        }
        Ok(Expr::Column { source: None, name })
    }

    fn case(&mut self) -> Result<Expr, SqlError> {
        self.expect_kw("CASE")?;
        let operand = if self.is_kw("WHEN") {
            None
        } else {
            Some(Box::new(self.value_expr()?))
        };
        let mut whens = Vec::new();
        while self.eat_kw("WHEN") {
            let condition = self.expr()?;
            self.expect_kw("THEN")?;
            whens.push((condition, self.expr()?));
        }
        if whens.is_empty() {
            return Err(self.unexpected("WHEN"));
        }
        let otherwise = if self.eat_kw("ELSE") {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        self.expect_kw("END")?;
        Ok(Expr::Case {
            operand,
            whens,
            otherwise,
        })
    }

    // ---- types ----

    fn sql_type(&mut self) -> Result<SqlType, SqlError> {
        self.enter()?;
        let t = self.sql_type_inner();
        self.depth -= 1;
        t
    }

    fn sql_type_inner(&mut self) -> Result<SqlType, SqlError> {
        let name = match self.peek() {
            Some(Tok::Word(w)) => w.clone(),
            Some(Tok::Quoted(q)) => q.clone(),
            _ => return Err(self.unexpected("a type")),
        };
        self.pos += 1;
        let simple = match name.as_str() {
            "BOOLEAN" => Some(SqlType::Boolean),
            "INT" | "INTEGER" => Some(SqlType::Int),
            "BIGINT" => Some(SqlType::Bigint),
            "DOUBLE" => Some(SqlType::Double),
            "STRING" | "VARCHAR" => Some(SqlType::String),
            "BYTES" => Some(SqlType::Bytes),
            "TIMESTAMP" => Some(SqlType::Timestamp),
            "DATE" => Some(SqlType::Date),
            "TIME" => Some(SqlType::Time),
            _ => None,
        };
        if let Some(t) = simple {
            let at = self.at();
            // VARCHAR(n): the length is accepted and ignored, as ksqlDB does.
            if self.type_parameters()? > 0 && t != SqlType::String {
                return Err(SqlError::Parse {
                    at,
                    message: format!("{name} takes no parameters"),
                });
            }
            return Ok(t);
        }
        let t = match name.as_str() {
            "DECIMAL" => {
                self.expect(&Tok::LParen)?;
                let precision = self.integer()?;
                self.expect(&Tok::Comma)?;
                let scale = self.integer()?;
                self.expect(&Tok::RParen)?;
                if !(1..=1000).contains(&precision) || scale < 0 || scale > precision {
                    return Err(SqlError::Parse {
                        at: self.at(),
                        message: format!(
                            "DECIMAL({precision}, {scale}): precision must be positive and scale between 0 and the precision"
                        ),
                    });
                }
                SqlType::Decimal {
                    precision: precision as u32,
                    scale: scale as u32,
                }
            }
            "ARRAY" => {
                self.expect(&Tok::Lt)?;
                let item = self.sql_type()?;
                self.expect(&Tok::Gt)?;
                SqlType::Array(Box::new(item))
            }
            "MAP" => {
                self.expect(&Tok::Lt)?;
                let k = self.sql_type()?;
                self.expect(&Tok::Comma)?;
                let v = self.sql_type()?;
                self.expect(&Tok::Gt)?;
                SqlType::Map(Box::new(k), Box::new(v))
            }
            "STRUCT" => {
                self.expect(&Tok::Lt)?;
                let mut fields = Vec::new();
                if !self.eat(&Tok::Gt) {
                    loop {
                        let field = self.ident()?;
                        fields.push((field, self.sql_type()?));
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    self.expect(&Tok::Gt)?;
                }
                SqlType::Struct(fields)
            }
            _ if RESERVED.contains(&name.as_str()) || name == "NULL" => {
                self.pos -= 1;
                return Err(self.unexpected("a type"));
            }
            _ => SqlType::Custom(name),
        };
        Ok(t)
    }
}

/// Words that start the next clause, never an alias.
fn is_clause_word(w: &str) -> bool {
    matches!(
        w,
        "EMIT"
            | "PARTITION"
            | "WINDOW"
            | "GROUP"
            | "HAVING"
            | "LIMIT"
            | "WHERE"
            | "JOIN"
            | "LEFT"
            | "RIGHT"
            | "FULL"
            | "INNER"
            | "ON"
            | "WITHIN"
            | "FROM"
    )
}

/// ksqlDB's "magic" timestamps: a STRING literal compared with ROWTIME, WINDOWSTART or
/// WINDOWEND in WHERE is a (partial) timestamp (`ROWTIME > '2019-01-01T00:00'`), read as
/// milliseconds since the epoch.
fn magic_timestamps(e: &Expr) -> Expr {
    use crate::ast::{BinaryOp, Literal};
    let is_time = |e: &Expr| matches!(e, Expr::Column { name, .. } if matches!(name.as_str(), "ROWTIME" | "WINDOWSTART" | "WINDOWEND"));
    let as_time = |e: &Expr| -> Expr {
        match e {
            Expr::Literal(Literal::String(text)) => {
                match crate::datetime::parse_partial_timestamp(text) {
                    Some(ms) => Expr::Literal(Literal::Integer(ms)),
                    None => e.clone(),
                }
            }
            other => other.clone(),
        }
    };
    e.rewrite(&mut |x| match x {
        Expr::Binary { op, left, right }
            if matches!(
                op,
                BinaryOp::Eq
                    | BinaryOp::Neq
                    | BinaryOp::Lt
                    | BinaryOp::Lte
                    | BinaryOp::Gt
                    | BinaryOp::Gte
            ) && (is_time(left) || is_time(right)) =>
        {
            Some(Expr::Binary {
                op: *op,
                left: Box::new(as_time(left)),
                right: Box::new(as_time(right)),
            })
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } if is_time(expr) => Some(Expr::Between {
            expr: expr.clone(),
            low: Box::new(as_time(low)),
            high: Box::new(as_time(high)),
            negated: *negated,
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> Expr {
        Expr::Column {
            source: None,
            name: name.into(),
        }
    }

    fn int(n: i64) -> Expr {
        Expr::Literal(Literal::Integer(n))
    }

    #[test]
    fn negative_literals_carry_their_sign_and_overflows_are_reported_as_written() {
        let Statement::Query(q) =
            parse_statement("SELECT -9223372036854775808, -1.5E3 FROM S;").unwrap()
        else {
            panic!()
        };
        let SelectItem::Expr { expr, .. } = &q.select[0] else {
            panic!()
        };
        assert_eq!(*expr, int(i64::MIN));
        for (sql, wanted) in [
            (
                "SELECT 9223372036854775808 FROM S;",
                "Invalid numeric literal: 9223372036854775808",
            ),
            (
                "SELECT -9223372036854775809 FROM S;",
                "Invalid numeric literal: -9223372036854775809",
            ),
            (
                "SELECT -1.7976931348623160E308 FROM S;",
                "Number overflows DOUBLE: -1.7976931348623160E308",
            ),
        ] {
            let e = parse_statement(sql).err().unwrap().to_string();
            assert!(e.contains(wanted), "{sql}: {e}");
        }
        // A binary minus stays one.
        let Statement::Query(q) = parse_statement("SELECT A -1 FROM S;").unwrap() else {
            panic!()
        };
        assert!(matches!(
            &q.select[0],
            SelectItem::Expr {
                expr: Expr::Binary { .. },
                ..
            }
        ));
    }

    #[test]
    fn create_stream_with_columns_and_properties() {
        let s = parse_statement(
            "CREATE STREAM INPUT (id int KEY, name STRING, `Mixed` ARRAY<DECIMAL(4,2)>) WITH (kafka_topic='test_topic', value_format='JSON', partitions=1);",
        )
        .unwrap();
        let Statement::CreateSource {
            kind,
            name,
            columns,
            properties,
            ..
        } = s
        else {
            panic!("{s:?}")
        };
        assert_eq!(kind, SourceKind::Stream);
        assert_eq!(name, "INPUT");
        assert_eq!(columns.len(), 3);
        assert_eq!(columns[0].constraint, ColumnConstraint::Key);
        assert_eq!(columns[2].name, "Mixed");
        assert_eq!(
            columns[2].sql_type,
            SqlType::Array(Box::new(SqlType::Decimal {
                precision: 4,
                scale: 2
            }))
        );
        assert_eq!(
            properties,
            vec![
                ("KAFKA_TOPIC".into(), Literal::String("test_topic".into())),
                ("VALUE_FORMAT".into(), Literal::String("JSON".into())),
                ("PARTITIONS".into(), Literal::Integer(1)),
            ]
        );
    }

    #[test]
    fn a_windowed_aggregation_with_every_clause() {
        let s = parse_statement(
            "CREATE TABLE T AS SELECT ID, COUNT(*) AS C, SUM(V) FROM S WINDOW TUMBLING (SIZE 30 SECONDS, RETENTION 1 DAYS, GRACE PERIOD 0 MILLISECONDS) WHERE V > 0 AND NOT NAME LIKE 'x%' GROUP BY ID HAVING COUNT(*) > 1 EMIT CHANGES;",
        )
        .unwrap();
        let Statement::CreateAsSelect { kind, query, .. } = s else {
            panic!()
        };
        assert_eq!(kind, SourceKind::Table);
        assert_eq!(query.select.len(), 3);
        assert_eq!(
            query.window,
            Some(Window {
                kind: WindowKind::Tumbling {
                    size: Duration {
                        amount: 30,
                        unit: TimeUnit::Seconds
                    }
                },
                retention: Some(Duration {
                    amount: 1,
                    unit: TimeUnit::Days
                }),
                grace: Some(Duration {
                    amount: 0,
                    unit: TimeUnit::Milliseconds
                }),
            })
        );
        assert_eq!(query.group_by, vec![col("ID")]);
        assert!(query.having.is_some());
        assert_eq!(query.emit, Some(Emit::Changes));
    }

    #[test]
    fn joins_with_within_and_aliases() {
        let s = parse_statement(
            "SELECT l.id, r.v FROM left_s l LEFT OUTER JOIN right_s AS r WITHIN (1 HOUR, 2 HOURS) GRACE PERIOD 5 MINUTES ON l.id = r.id EMIT CHANGES",
        )
        .unwrap();
        let Statement::Query(q) = s else { panic!() };
        assert_eq!(q.from_alias.as_deref(), Some("L"));
        assert_eq!(q.joins.len(), 1);
        let j = &q.joins[0];
        assert_eq!(j.kind, JoinType::Left);
        assert_eq!(j.alias.as_deref(), Some("R"));
        let (before, after, grace) = j.within.unwrap();
        assert_eq!((before.millis(), after.millis()), (3_600_000, 7_200_000));
        assert_eq!(grace.unwrap().millis(), 300_000);
    }

    #[test]
    fn expression_precedence_and_forms() {
        assert_eq!(
            parse_expression("1 + 2 * 3").unwrap(),
            Expr::Binary {
                op: BinaryOp::Add,
                left: Box::new(int(1)),
                right: Box::new(Expr::Binary {
                    op: BinaryOp::Multiply,
                    left: Box::new(int(2)),
                    right: Box::new(int(3)),
                }),
            }
        );
        assert_eq!(parse_expression("-5").unwrap(), int(-5));
        for text in [
            "a BETWEEN 1 AND 10 AND b NOT IN (1, 2)",
            "CASE WHEN a > 1 THEN 'x' WHEN a IS NULL THEN 'n' ELSE 'y' END",
            "CASE a WHEN 1 THEN 'one' END",
            "CAST(a AS DECIMAL(10, 2)) / 3",
            "s->f->g[0] || 'x'",
            "TRANSFORM(arr, x => x + 1)",
            "REDUCE(arr, 0, (s, x) => s + x)",
            "ARRAY[1, 2, 3][1]",
            "MAP('a' := 1, 'b' := 2)",
            "STRUCT(A := 1, B := 'x')",
            "a IS NOT DISTINCT FROM b",
            "TIMESTAMPADD(SECONDS, 5, ts)",
            "ROWTIME >= '2020-01-01'",
            "${limit} > 0",
            "TIMESTAMP '2020-01-01T00:00:00'",
        ] {
            parse_expression(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    #[test]
    fn other_statements() {
        for text in [
            "SHOW STREAMS",
            "LIST TABLES EXTENDED",
            "SHOW ALL TOPICS",
            "SHOW QUERIES",
            "SHOW PROPERTIES",
            "LIST FUNCTIONS",
            "DESCRIBE s EXTENDED",
            "DESCRIBE FUNCTION SUBSTRING",
            "DESCRIBE STREAMS",
            "EXPLAIN CTAS_T_1",
            "EXPLAIN SELECT * FROM s EMIT CHANGES",
            "PRINT 'topic' FROM BEGINNING INTERVAL 2 LIMIT 10",
            "SET 'auto.offset.reset'='earliest'",
            "UNSET 'auto.offset.reset'",
            "DEFINE x = 'y'",
            "UNDEFINE x",
            "RUN SCRIPT '/tmp/x.sql'",
            "TERMINATE CSAS_OUT_0",
            "TERMINATE ALL",
            "DROP STREAM IF EXISTS s DELETE TOPIC",
            "DROP TABLE t",
            "INSERT INTO s (id, name) VALUES (1, 'a')",
            "INSERT INTO s SELECT * FROM t EMIT CHANGES",
            "CREATE OR REPLACE STREAM s2 WITH (kafka_topic='x') AS SELECT * FROM s PARTITION BY name",
            "CREATE SOURCE TABLE t (id INT PRIMARY KEY, v STRING) WITH (kafka_topic='t', format='JSON')",
            "CREATE TYPE ADDRESS AS STRUCT<street STRING, zip INT>",
            "CREATE STREAM s (h ARRAY<STRUCT<key STRING, value BYTES>> HEADERS, x BYTES HEADER('k')) WITH (kafka_topic='t', value_format='JSON')",
            "SELECT * FROM t WHERE id = 1",
            "SELECT s->* FROM t",
            "SELECT * FROM s WINDOW HOPPING (SIZE 1 MINUTE, ADVANCE BY 10 SECONDS) GROUP BY (a, b) EMIT FINAL",
            "SELECT * FROM s WINDOW SESSION (30 SECONDS) GROUP BY a EMIT CHANGES LIMIT 5",
            "SELECT * FROM s WINDOW w SESSION (30 SECONDS) GROUP BY a",
            "CREATE STREAM s (k VARCHAR(STRING) KEY, v VARCHAR(10))",
        ] {
            parse_statement(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        assert_eq!(
            parse_statements("SHOW STREAMS; SHOW TABLES;")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn errors_name_what_was_expected_and_where() {
        for (text, what) in [
            ("SELECT FROM s", "found 'FROM'"),
            ("CREATE STREAM", "an identifier"),
            ("SELECT * FROM s WHERE", "an expression"),
            (
                "SELECT * FROM s WINDOW ROLLING (SIZE 1 SECOND)",
                "TUMBLING, HOPPING or SESSION",
            ),
            ("CREATE STREAM s (a DECIMAL(2, 3))", "scale"),
            ("SHOW NOTHING", "STREAMS"),
            ("SELECT * FROM s EMIT SOMETIMES", "CHANGES or FINAL"),
            ("SELECT * FROM s t u", "';'"),
            ("CREATE STREAM s (a NULL)", "a type"),
            ("CREATE STREAM s (a MAP<STRING, NULL>)", "a type"),
            ("SELECT CAST(a AS NULL) FROM s", "a type"),
            ("SELECT 1.7976931348623159E308 FROM s", "overflows DOUBLE"),
        ] {
            let e = parse_statement(text).unwrap_err().to_string();
            assert!(e.contains(what), "{text}: {e}");
        }
    }

    #[test]
    fn syntax_errors_are_placed_as_ksqldb_places_them() {
        let e = parse_statement("SHOW STREAMS;\nSELECT * FROM s WHERE;").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2:22: Syntax Error\nexpected an expression but found ';'"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let e = parse_expression(&deep).unwrap_err().to_string();
        assert!(e.contains("nested deeper"), "{e}");
        let deep_not = format!("{}TRUE", "NOT ".repeat(10_000));
        assert!(parse_expression(&deep_not).is_err());
        let deep_type = format!("{}INT{}", "ARRAY<".repeat(1000), ">".repeat(1000));
        assert!(parse_statement(&format!("CREATE STREAM s (a {deep_type})")).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse_statements(&text);
        }

        #[test]
        fn sql_shaped_noise_never_panics(words in proptest::collection::vec(
            proptest::sample::select(vec!["SELECT", "*", "FROM", "s", "(", ")", ",", "WHERE", "a", "=", "1",
                "CASE", "WHEN", "THEN", "END", "->", "[", "]", "=>", "CREATE", "STREAM", "WITH", "'x'",
                "GROUP", "BY", "WINDOW", "TUMBLING", "SIZE", "SECONDS", "AND", "NOT", "IN", ";", "ARRAY", "<", ">"]),
            0..40)) {
            let _ = parse_statements(&words.join(" "));
        }
    }

    #[test]
    fn statements_split_on_semicolons_outside_quotes_and_comments() {
        let (s, rest) = split_statements(
            "CREATE STREAM S (A STRING) WITH (kafka_topic='a;b', value_format='JSON');\n-- a comment; not a statement\nSELECT `x;y` FROM S;\nSELECT 'it''s;' FROM S",
        );
        assert_eq!(
            s,
            [
                "CREATE STREAM S (A STRING) WITH (kafka_topic='a;b', value_format='JSON');",
                "SELECT `x;y` FROM S;"
            ]
        );
        assert_eq!(rest.trim(), "SELECT 'it''s;' FROM S");
    }

    #[test]
    fn variables_are_substituted_case_insensitively() {
        let mut v = std::collections::BTreeMap::new();
        v.insert("TOPIC".to_string(), "orders".to_string());
        assert_eq!(
            substitute_variables("WITH (kafka_topic='${topic}') ${Topic} ${other}", &v),
            "WITH (kafka_topic='orders') orders ${other}"
        );
    }
}
