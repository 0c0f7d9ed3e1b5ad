//! ksqlDB's tokens, as its grammar (`SqlBase.g4`) defines them: keywords and unquoted
//! identifiers are case-insensitive (kept upper-cased, as ksqlDB stores unquoted names),
//! `"quoted"` and `` `backquoted` `` identifiers keep their case (a doubled quote escapes
//! one), `'strings'` (a doubled `'` escapes one), integer, decimal and floating-point
//! numbers, `${variables}`, the operators, and comments (`--` to the end of the line,
//! `/* … */`) and whitespace, which are dropped.
//!
//! Pure and bounded: one pass over the input, every token a slice of it or built from it,
//! each carrying its byte offset for error messages.

use crate::SqlError;

/// One token and where it starts (byte offset in the statement text).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: Tok,
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An unquoted word, upper-cased: a keyword or an identifier (the parser decides, as
    /// ksqlDB lets many keywords be identifiers).
    Word(String),
    /// A `"quoted"` or `` `backquoted` `` identifier, case kept.
    Quoted(String),
    /// An identifier starting with a digit (`1ST_COLUMN`), upper-cased.
    DigitIdentifier(String),
    /// A `'string'`, unescaped.
    Str(String),
    /// Digits only.
    Integer(String),
    /// Digits with a point (`1.50` keeps its scale).
    Decimal(String),
    /// With an exponent (`1E3`, `2.5e-1`).
    Float(String),
    /// `${name}`: the name.
    Variable(String),
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Plus,
    Minus,
    Asterisk,
    Slash,
    Percent,
    /// `||`
    Concat,
    /// `:=`
    Assign,
    /// `->`
    Arrow,
    /// `=>`
    Lambda,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Semicolon,
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Word(w) | Tok::DigitIdentifier(w) => f.write_str(w),
            Tok::Quoted(q) => write!(f, "`{q}`"),
            Tok::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Tok::Integer(n) | Tok::Decimal(n) | Tok::Float(n) => f.write_str(n),
            Tok::Variable(v) => write!(f, "${{{v}}}"),
            other => f.write_str(match other {
                Tok::Eq => "=",
                Tok::Neq => "<>",
                Tok::Lt => "<",
                Tok::Lte => "<=",
                Tok::Gt => ">",
                Tok::Gte => ">=",
                Tok::Plus => "+",
                Tok::Minus => "-",
                Tok::Asterisk => "*",
                Tok::Slash => "/",
                Tok::Percent => "%",
                Tok::Concat => "||",
                Tok::Assign => ":=",
                Tok::Arrow => "->",
                Tok::Lambda => "=>",
                Tok::LParen => "(",
                Tok::RParen => ")",
                Tok::LBracket => "[",
                Tok::RBracket => "]",
                Tok::Comma => ",",
                Tok::Dot => ".",
                _ => ";",
            }),
        }
    }
}

/// The largest statement text accepted (a script of many statements is split first).
pub const TEXT_BYTES_MAX: usize = 1 << 20;

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '@'
}

/// The tokens of `text`, comments and whitespace dropped.
pub fn tokenize(text: &str) -> Result<Vec<Token>, SqlError> {
    if text.len() > TEXT_BYTES_MAX {
        return Err(SqlError::Parse {
            at: 0,
            message: format!(
                "statement text of {} bytes exceeds {TEXT_BYTES_MAX}",
                text.len()
            ),
        });
    }
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, message: String| SqlError::Parse { at, message };
    while i < bytes.len() {
        let c = text[i..].chars().next().expect("in bounds");
        let start = i;
        let next = bytes.get(i + 1).copied();
        let simple = |kind: Tok, len: usize| (kind, len);
        let (kind, len) = match c {
            ' ' | '\t' | '\r' | '\n' => {
                i += 1;
                continue;
            }
            '-' if next == Some(b'-') => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
                continue;
            }
            '/' if next == Some(b'*') => {
                let end = text[i + 2..]
                    .find("*/")
                    .ok_or_else(|| err(start, "unterminated /* comment".into()))?;
                i += 2 + end + 2;
                continue;
            }
            '\'' => {
                let (s, len) = quoted(&text[i..], '\'')
                    .ok_or_else(|| err(start, "unterminated string literal".into()))?;
                (Tok::Str(s), len)
            }
            '"' | '`' => {
                let (s, len) = quoted(&text[i..], c)
                    .ok_or_else(|| err(start, format!("unterminated {c}quoted identifier{c}")))?;
                if s.is_empty() {
                    return Err(err(start, "an empty quoted identifier".into()));
                }
                (Tok::Quoted(s), len)
            }
            '$' if next == Some(b'{') => {
                let end = text[i..]
                    .find('}')
                    .ok_or_else(|| err(start, "unterminated ${variable}".into()))?;
                let name = &text[i + 2..i + end];
                if name.is_empty()
                    || !name.starts_with(is_word_start)
                    || !name.chars().all(is_word_char)
                {
                    return Err(err(start, format!("'{name}' is not a variable name")));
                }
                (Tok::Variable(name.to_ascii_uppercase()), end + 1)
            }
            c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                number(&text[i..])
            }
            c if is_word_start(c) => {
                let len = text[i..]
                    .find(|c: char| !is_word_char(c))
                    .unwrap_or(bytes.len() - i);
                (Tok::Word(text[i..i + len].to_ascii_uppercase()), len)
            }
            '=' if next == Some(b'>') => simple(Tok::Lambda, 2),
            '=' => simple(Tok::Eq, 1),
            '<' if next == Some(b'>') => simple(Tok::Neq, 2),
            '!' if next == Some(b'=') => simple(Tok::Neq, 2),
            '<' if next == Some(b'=') => simple(Tok::Lte, 2),
            '<' => simple(Tok::Lt, 1),
            '>' if next == Some(b'=') => simple(Tok::Gte, 2),
            '>' => simple(Tok::Gt, 1),
            '+' => simple(Tok::Plus, 1),
            '-' if next == Some(b'>') => simple(Tok::Arrow, 2),
            '-' => simple(Tok::Minus, 1),
            '*' => simple(Tok::Asterisk, 1),
            '/' => simple(Tok::Slash, 1),
            '%' => simple(Tok::Percent, 1),
            '|' if next == Some(b'|') => simple(Tok::Concat, 2),
            ':' if next == Some(b'=') => simple(Tok::Assign, 2),
            '(' => simple(Tok::LParen, 1),
            ')' => simple(Tok::RParen, 1),
            '[' => simple(Tok::LBracket, 1),
            ']' => simple(Tok::RBracket, 1),
            ',' => simple(Tok::Comma, 1),
            '.' => simple(Tok::Dot, 1),
            ';' => simple(Tok::Semicolon, 1),
            other => return Err(err(start, format!("unexpected character '{other}'"))),
        };
        out.push(Token { kind, at: start });
        i += len;
    }
    Ok(out)
}

/// A quoted run starting at `text[0]` (the quote `q`): its content with doubled quotes
/// unescaped, and its length in bytes with both quotes.
fn quoted(text: &str, q: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == q {
            if chars.peek().is_some_and(|(_, n)| *n == q) {
                chars.next();
                out.push(q);
                continue;
            }
            return Some((out, i + 1));
        }
        out.push(c);
    }
    None
}

/// A number at the start of `text`: integer, decimal (a point) or float (an exponent); a
/// digit followed by letters is a digit identifier (`1ST`).
fn number(text: &str) -> (Tok, usize) {
    let b = text.as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = digits(0);
    let mut point = false;
    if b.get(i) == Some(&b'.') {
        point = true;
        i += 1 + digits(i + 1);
    }
    let mut exponent = false;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let n = digits(i + 1 + sign);
        if n > 0 {
            exponent = true;
            i += 1 + sign + n;
        }
    }
    if !point && !exponent && b.get(i).is_some_and(|c| is_word_char(*c as char)) {
        let len = i + text[i..]
            .find(|c: char| !is_word_char(c))
            .unwrap_or(text.len() - i);
        return (Tok::DigitIdentifier(text[..len].to_ascii_uppercase()), len);
    }
    let s = text[..i].to_ascii_uppercase();
    let kind = if exponent {
        Tok::Float(s)
    } else if point {
        Tok::Decimal(s)
    } else {
        Tok::Integer(s)
    };
    (kind, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Tok> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn a_create_statement() {
        assert_eq!(
            kinds("create stream s (id int key, `Name` string) with (kafka_topic='t');"),
            vec![
                w("CREATE"),
                w("STREAM"),
                w("S"),
                Tok::LParen,
                w("ID"),
                w("INT"),
                w("KEY"),
                Tok::Comma,
                Tok::Quoted("Name".into()),
                w("STRING"),
                Tok::RParen,
                w("WITH"),
                Tok::LParen,
                w("KAFKA_TOPIC"),
                Tok::Eq,
                Tok::Str("t".into()),
                Tok::RParen,
                Tok::Semicolon,
            ]
        );
    }

    #[test]
    fn literals_operators_and_comments() {
        assert_eq!(
            kinds("1 1.50 .5 1e3 2.5E-1 1st 'it''s' \"a\"\"b\" ${My_Var} -- gone\n/* gone\n */ x"),
            vec![
                Tok::Integer("1".into()),
                Tok::Decimal("1.50".into()),
                Tok::Decimal(".5".into()),
                Tok::Float("1E3".into()),
                Tok::Float("2.5E-1".into()),
                Tok::DigitIdentifier("1ST".into()),
                Tok::Str("it's".into()),
                Tok::Quoted("a\"b".into()),
                Tok::Variable("MY_VAR".into()),
                w("X"),
            ]
        );
        assert_eq!(
            kinds("a<>b != c <= >= -> => := || % ."),
            vec![
                w("A"),
                Tok::Neq,
                w("B"),
                Tok::Neq,
                w("C"),
                Tok::Lte,
                Tok::Gte,
                Tok::Arrow,
                Tok::Lambda,
                Tok::Assign,
                Tok::Concat,
                Tok::Percent,
                Tok::Dot,
            ]
        );
        // A minus before a number stays an operator (the parser folds `-1`).
        assert_eq!(kinds("-1"), vec![Tok::Minus, Tok::Integer("1".into())]);
    }

    #[test]
    fn errors_say_where() {
        for (text, at, what) in [
            ("select 'open", 7, "unterminated string"),
            ("select `x", 7, "unterminated"),
            ("a /* b", 2, "unterminated /*"),
            ("a ? b", 2, "unexpected character '?'"),
            ("${1x}", 0, "not a variable name"),
            ("``", 0, "empty quoted identifier"),
        ] {
            match tokenize(text) {
                Err(SqlError::Parse { at: got, message }) => {
                    assert_eq!(got, at, "{text}");
                    assert!(message.contains(what), "{text}: {message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = tokenize(&text);
        }
    }
}
