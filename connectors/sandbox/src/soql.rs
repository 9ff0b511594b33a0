//! Lexer and parser for the SOQL subset the sandbox evaluates.
//!
//! Supported: `SELECT` of plain and dotted parent fields, `FROM` one object, `WHERE` with
//! comparison operators, `IN`, `NOT IN`, `AND`, `OR`, `NOT` and parentheses, `ORDER BY` with
//! `ASC`/`DESC` and `NULLS FIRST`/`NULLS LAST`, and `LIMIT`. Everything else (functions,
//! subqueries, `LIKE`, `GROUP BY`, `OFFSET`, date functions such as `TODAY`) is rejected with
//! `MALFORMED_QUERY` so that no query gets a wrong result.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// A query error with the Salesforce error code and, where known, the byte offset it refers to.
#[derive(Debug)]
pub(crate) struct SoqlError {
    pub code: &'static str,
    pub message: String,
    pub position: Option<usize>,
}

impl SoqlError {
    pub(crate) fn malformed(message: impl Into<String>, position: usize) -> SoqlError {
        SoqlError {
            code: "MALFORMED_QUERY",
            message: message.into(),
            position: Some(position),
        }
    }

    pub(crate) fn invalid_field(message: impl Into<String>, position: usize) -> SoqlError {
        SoqlError {
            code: "INVALID_FIELD",
            message: message.into(),
            position: Some(position),
        }
    }

    /// Formats the message as Salesforce does: the query, a caret under the offending column,
    /// the row and column, then the explanation.
    pub(crate) fn render(&self, query: &str) -> String {
        let Some(position) = self.position else {
            return self.message.clone();
        };
        let before = &query[..position.min(query.len())];
        let row = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        let line = query[line_start..].lines().next().unwrap_or("");
        format!(
            "\n{line}\n{caret:>width$}\nERROR at Row:{row}:Column:{column}\n{message}",
            caret = "^",
            width = column,
            message = self.message
        )
    }
}

/// Comparison operators of a `WHERE` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A literal value as written in the query.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
}

/// A field reference such as `Name` or `Account.Owner.Name`, with its offset in the query.
#[derive(Clone, Debug)]
pub(crate) struct FieldRef {
    pub path: String,
    pub position: usize,
}

/// A `WHERE` condition tree.
#[derive(Debug)]
pub(crate) enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Compare {
        field: FieldRef,
        op: CompareOp,
        value: Literal,
        value_position: usize,
    },
    In {
        field: FieldRef,
        negated: bool,
        values: Vec<(Literal, usize)>,
    },
}

/// One `ORDER BY` key.
#[derive(Debug)]
pub(crate) struct OrderKey {
    pub field: FieldRef,
    pub descending: bool,
    pub nulls_last: bool,
}

/// A parsed `SELECT` statement.
#[derive(Debug)]
pub(crate) struct Query {
    pub fields: Vec<FieldRef>,
    pub object: String,
    pub object_position: usize,
    pub filter: Option<Condition>,
    pub order: Vec<OrderKey>,
    pub limit: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64, String),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    Comma,
    OpenParen,
    CloseParen,
    Operator(CompareOp),
    End,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(w) => w.clone(),
        Token::Text(s) => format!("'{s}'"),
        Token::Number(_, text) => text.clone(),
        Token::Date(d) => d.to_string(),
        Token::DateTime(t) => t.to_rfc3339(),
        Token::Comma => ",".into(),
        Token::OpenParen => "(".into(),
        Token::CloseParen => ")".into(),
        Token::Operator(op) => match op {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
        .to_string(),
        Token::End => "end of query".into(),
    }
}

fn lex(query: &str) -> Result<Vec<(Token, usize)>, SoqlError> {
    let bytes = query.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let token = match c {
            b',' => {
                i += 1;
                Token::Comma
            }
            b'(' => {
                i += 1;
                Token::OpenParen
            }
            b')' => {
                i += 1;
                Token::CloseParen
            }
            b'=' => {
                i += 1;
                Token::Operator(CompareOp::Eq)
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Token::Operator(CompareOp::Ne)
            }
            b'<' => match bytes.get(i + 1) {
                Some(b'=') => {
                    i += 2;
                    Token::Operator(CompareOp::Le)
                }
                Some(b'>') => {
                    i += 2;
                    Token::Operator(CompareOp::Ne)
                }
                _ => {
                    i += 1;
                    Token::Operator(CompareOp::Lt)
                }
            },
            b'>' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 2;
                    Token::Operator(CompareOp::Ge)
                } else {
                    i += 1;
                    Token::Operator(CompareOp::Gt)
                }
            }
            b'\'' => {
                let (text, end) = lex_string(query, i)?;
                i = end;
                Token::Text(text)
            }
            b'0'..=b'9' => {
                let (token, end) = lex_number_or_temporal(query, i)?;
                i = end;
                token
            }
            b'-' | b'+' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let (token, end) = lex_number_or_temporal(query, i)?;
                i = end;
                token
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.'))
                {
                    i += 1;
                }
                Token::Word(query[start..i].to_string())
            }
            _ => {
                let character: String = query[i..].chars().take(1).collect();
                return Err(SoqlError::malformed(
                    format!("unexpected character '{character}'; the sandbox supports no bind variables or functions"),
                    i,
                ));
            }
        };
        tokens.push((token, start));
    }
    tokens.push((Token::End, query.len()));
    Ok(tokens)
}

/// Reads a single-quoted string starting at `start`, resolving backslash escapes.
fn lex_string(query: &str, start: usize) -> Result<(String, usize), SoqlError> {
    let mut out = String::new();
    let mut chars = query[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '\'' => return Ok((out, start + 1 + offset + 1)),
            '\\' => {
                let Some((_, escaped)) = chars.next() else {
                    break;
                };
                out.push(match escaped {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    '\'' | '"' | '\\' => escaped,
                    other => {
                        return Err(SoqlError::malformed(
                            format!("invalid escape sequence '\\{other}' in string literal; escape a backslash as '\\\\'"),
                            start + 1 + offset,
                        ))
                    }
                });
            }
            other => out.push(other),
        }
    }
    Err(SoqlError::malformed(
        "unterminated string literal; close it with a single quote",
        start,
    ))
}

fn digits_at(bytes: &[u8], at: usize, count: usize) -> bool {
    at + count <= bytes.len() && bytes[at..at + count].iter().all(u8::is_ascii_digit)
}

fn is_delimiter(byte: Option<&u8>) -> bool {
    match byte {
        None => true,
        Some(b) => {
            b.is_ascii_whitespace() || matches!(b, b',' | b'(' | b')' | b'=' | b'!' | b'<' | b'>')
        }
    }
}

/// Returns `query[start..end]` for an error message, with `end` clamped to the query and
/// moved forward to a character boundary, so a multi-byte character is shown whole.
fn excerpt(query: &str, start: usize, end: usize) -> &str {
    let mut end = end.min(query.len());
    while !query.is_char_boundary(end) {
        end += 1;
    }
    &query[start..end]
}

/// Reads a number, a date (`2024-05-01`) or a datetime (`2024-05-01T12:00:00Z`,
/// `...+02:00`, `...-05:00`, with optional fractional seconds).
fn lex_number_or_temporal(query: &str, start: usize) -> Result<(Token, usize), SoqlError> {
    let bytes = query.as_bytes();
    let is_date = digits_at(bytes, start, 4)
        && bytes.get(start + 4) == Some(&b'-')
        && digits_at(bytes, start + 5, 2)
        && bytes.get(start + 7) == Some(&b'-')
        && digits_at(bytes, start + 8, 2);
    if !is_date {
        let mut i = start + 1;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let text = &query[start..i];
        if !is_delimiter(bytes.get(i)) {
            return Err(SoqlError::malformed(
                format!("unexpected token: '{}'", excerpt(query, start, i + 1)),
                start,
            ));
        }
        let number = text
            .parse::<f64>()
            .map_err(|_| SoqlError::malformed(format!("invalid number literal '{text}'"), start))?;
        return Ok((Token::Number(number, text.to_string()), i));
    }

    let date_text = &query[start..start + 10];
    let date = NaiveDate::parse_from_str(date_text, "%Y-%m-%d")
        .map_err(|_| SoqlError::malformed(format!("invalid date literal '{date_text}'"), start))?;
    let mut i = start + 10;
    if bytes.get(i) != Some(&b'T') {
        if !is_delimiter(bytes.get(i)) {
            return Err(SoqlError::malformed(
                format!("invalid date literal starting '{date_text}'"),
                start,
            ));
        }
        return Ok((Token::Date(date), i));
    }

    i += 1;
    let time_ok = digits_at(bytes, i, 2)
        && bytes.get(i + 2) == Some(&b':')
        && digits_at(bytes, i + 3, 2)
        && bytes.get(i + 5) == Some(&b':')
        && digits_at(bytes, i + 6, 2);
    if !time_ok {
        return Err(SoqlError::malformed(
            "invalid datetime literal: expected YYYY-MM-DDThh:mm:ss followed by Z or an offset such as +02:00",
            start,
        ));
    }
    let time = NaiveTime::parse_from_str(&query[i..i + 8], "%H:%M:%S").map_err(|_| {
        SoqlError::malformed(
            format!(
                "invalid time in datetime literal '{}'",
                &query[start..i + 8]
            ),
            start,
        )
    })?;
    i += 8;
    let mut nanos = 0u32;
    if bytes.get(i) == Some(&b'.') {
        let fraction_start = i + 1;
        let mut end = fraction_start;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
        let fraction = &query[fraction_start..end];
        if fraction.is_empty() || fraction.len() > 9 {
            return Err(SoqlError::malformed(
                "invalid fractional seconds in datetime literal",
                start,
            ));
        }
        nanos = format!("{fraction:0<9}").parse().unwrap_or(0);
        i = end;
    }
    let naive = NaiveDateTime::new(date, time) + chrono::Duration::nanoseconds(i64::from(nanos));

    let offset_seconds = match bytes.get(i) {
        Some(b'Z') => {
            i += 1;
            0
        }
        Some(sign @ (b'+' | b'-'))
            if digits_at(bytes, i + 1, 2)
                && bytes.get(i + 3) == Some(&b':')
                && digits_at(bytes, i + 4, 2) =>
        {
            let hours: i32 = query[i + 1..i + 3].parse().unwrap_or(0);
            let minutes: i32 = query[i + 4..i + 6].parse().unwrap_or(0);
            i += 6;
            let magnitude = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        Some(b' ') if digits_at(bytes, i + 1, 2) && bytes.get(i + 3) == Some(&b':') => {
            return Err(SoqlError::malformed(
                format!(
                    "datetime literal '{}' has a space where its UTC offset sign belongs; an unencoded '+' in the URL arrives as a space, so encode it as %2B or use the Z form",
                    excerpt(query, start, i + 6)
                ),
                i,
            ));
        }
        _ => {
            return Err(SoqlError::malformed(
                format!(
                    "datetime literal '{}' needs a time zone: append Z or an offset such as +02:00",
                    &query[start..i]
                ),
                start,
            ))
        }
    };
    if !is_delimiter(bytes.get(i)) {
        return Err(SoqlError::malformed(
            "unexpected characters after datetime literal",
            i,
        ));
    }
    let offset = FixedOffset::east_opt(offset_seconds).ok_or_else(|| {
        SoqlError::malformed("UTC offset out of range in datetime literal", start)
    })?;
    let at = offset
        .from_local_datetime(&naive)
        .single()
        .ok_or_else(|| SoqlError::malformed("invalid datetime literal", start))?;
    Ok((Token::DateTime(at.with_timezone(&Utc)), i))
}

/// Maximum nesting of parentheses and `NOT` in a `WHERE` clause. Parsing, compiling and
/// evaluating recurse once per level, so an unbounded depth could overflow the stack of the
/// server thread.
// NOTE: Salesforce documents only the 100,000-character limit of a SOQL statement, not a
// nesting limit; this one is the sandbox's own.
const MAX_NESTING: usize = 64;

struct Parser {
    tokens: Vec<(Token, usize)>,
    next: usize,
    /// Nesting of the condition being parsed, counted by `unary`.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.next].0
    }

    fn position(&self) -> usize {
        self.tokens[self.next].1
    }

    fn advance(&mut self) -> (Token, usize) {
        let item = self.tokens[self.next].clone();
        if self.next + 1 < self.tokens.len() {
            self.next += 1;
        }
        item
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        if self.peek_keyword(keyword) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn unexpected(&self) -> SoqlError {
        SoqlError::malformed(
            format!("unexpected token: '{}'", describe(self.peek())),
            self.position(),
        )
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), SoqlError> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            Err(SoqlError::malformed(
                format!("expected {keyword} but found '{}'", describe(self.peek())),
                self.position(),
            ))
        }
    }

    fn field_ref(&mut self) -> Result<FieldRef, SoqlError> {
        match self.peek().clone() {
            Token::Word(word) if !is_reserved(&word) => {
                let (_, position) = self.advance();
                if matches!(self.peek(), Token::OpenParen) {
                    return Err(SoqlError::malformed(
                        format!("function {word}() is not supported by the sandbox; select plain fields"),
                        position,
                    ));
                }
                Ok(FieldRef {
                    path: word,
                    position,
                })
            }
            Token::OpenParen => Err(SoqlError::malformed(
                "child relationship subqueries are not supported by the sandbox",
                self.position(),
            )),
            _ => Err(self.unexpected()),
        }
    }

    fn literal(&mut self) -> Result<(Literal, usize), SoqlError> {
        let (token, position) = self.advance();
        let literal = match token {
            Token::Text(s) => Literal::Text(s),
            Token::Number(n, _) => Literal::Number(n),
            Token::Date(d) => Literal::Date(d),
            Token::DateTime(t) => Literal::DateTime(t),
            Token::Word(w) if w.eq_ignore_ascii_case("null") => Literal::Null,
            Token::Word(w) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Token::Word(w) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Token::OpenParen if self.peek_keyword("SELECT") => {
                return Err(SoqlError::malformed(
                    "semi-join subqueries are not supported by the sandbox",
                    position,
                ))
            }
            other => {
                return Err(SoqlError::malformed(
                    format!(
                        "unexpected token: '{}'; expected a literal value",
                        describe(&other)
                    ),
                    position,
                ))
            }
        };
        Ok((literal, position))
    }

    fn condition(&mut self) -> Result<Condition, SoqlError> {
        let first = self.unary()?;
        let joiner = if self.peek_keyword("AND") {
            "AND"
        } else if self.peek_keyword("OR") {
            "OR"
        } else {
            return Ok(first);
        };
        let other = if joiner == "AND" { "OR" } else { "AND" };
        let mut parts = vec![first];
        while self.eat_keyword(joiner) {
            parts.push(self.unary()?);
        }
        if self.peek_keyword(other) {
            return Err(SoqlError::malformed(
                format!("unexpected token: '{other}'; use parentheses when mixing AND and OR"),
                self.position(),
            ));
        }
        Ok(if joiner == "AND" {
            Condition::And(parts)
        } else {
            Condition::Or(parts)
        })
    }

    fn unary(&mut self) -> Result<Condition, SoqlError> {
        if self.depth >= MAX_NESTING {
            return Err(SoqlError::malformed(
                format!(
                    "the WHERE clause nests parentheses and NOT more than {MAX_NESTING} levels \
                     deep; flatten the condition"
                ),
                self.position(),
            ));
        }
        self.depth += 1;
        let condition = self.nested_unary();
        self.depth -= 1;
        condition
    }

    fn nested_unary(&mut self) -> Result<Condition, SoqlError> {
        if self.eat_keyword("NOT") {
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        if matches!(self.peek(), Token::OpenParen) {
            self.advance();
            let inner = self.condition()?;
            if !matches!(self.peek(), Token::CloseParen) {
                return Err(SoqlError::malformed(
                    format!("expected ')' but found '{}'", describe(self.peek())),
                    self.position(),
                ));
            }
            self.advance();
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Condition, SoqlError> {
        let field = self.field_ref()?;
        if let Token::Operator(op) = *self.peek() {
            self.advance();
            let (value, value_position) = self.literal()?;
            return Ok(Condition::Compare {
                field,
                op,
                value,
                value_position,
            });
        }
        let negated = self.eat_keyword("NOT");
        if self.eat_keyword("IN") {
            return Ok(Condition::In {
                field,
                negated,
                values: self.literal_list()?,
            });
        }
        if !negated {
            for unsupported in ["LIKE", "INCLUDES", "EXCLUDES"] {
                if self.peek_keyword(unsupported) {
                    return Err(SoqlError::malformed(
                        format!("operator {unsupported} is not supported by the sandbox"),
                        self.position(),
                    ));
                }
            }
        }
        Err(SoqlError::malformed(
            format!(
                "unexpected token: '{}'; expected an operator after {}",
                describe(self.peek()),
                field.path
            ),
            self.position(),
        ))
    }

    fn literal_list(&mut self) -> Result<Vec<(Literal, usize)>, SoqlError> {
        if !matches!(self.peek(), Token::OpenParen) {
            return Err(SoqlError::malformed(
                "expected '(' after IN",
                self.position(),
            ));
        }
        self.advance();
        let mut values = vec![self.literal()?];
        loop {
            match self.advance() {
                (Token::Comma, _) => values.push(self.literal()?),
                (Token::CloseParen, _) => return Ok(values),
                (other, position) => {
                    return Err(SoqlError::malformed(
                        format!("unexpected token: '{}' in IN list", describe(&other)),
                        position,
                    ))
                }
            }
        }
    }

    fn order_by(&mut self) -> Result<Vec<OrderKey>, SoqlError> {
        let mut keys = Vec::new();
        loop {
            let field = self.field_ref()?;
            let descending = if self.eat_keyword("DESC") {
                true
            } else {
                self.eat_keyword("ASC");
                false
            };
            // Salesforce sorts nulls first in both directions unless the query has NULLS LAST.
            let mut nulls_last = false;
            if self.eat_keyword("NULLS") {
                if self.eat_keyword("LAST") {
                    nulls_last = true;
                } else if !self.eat_keyword("FIRST") {
                    return Err(SoqlError::malformed(
                        "expected FIRST or LAST after NULLS",
                        self.position(),
                    ));
                }
            }
            keys.push(OrderKey {
                field,
                descending,
                nulls_last,
            });
            if !matches!(self.peek(), Token::Comma) {
                return Ok(keys);
            }
            self.advance();
        }
    }
}

/// Words that end a field list or condition, so they cannot be field names.
fn is_reserved(word: &str) -> bool {
    const RESERVED: [&str; 14] = [
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "ORDER", "BY", "LIMIT", "ASC", "DESC",
        "NULLS", "GROUP",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Parses one SOQL statement.
pub(crate) fn parse(query: &str) -> Result<Query, SoqlError> {
    let mut parser = Parser {
        tokens: lex(query)?,
        next: 0,
        depth: 0,
    };
    parser.expect_keyword("SELECT")?;
    let mut fields = vec![parser.field_ref()?];
    while matches!(parser.peek(), Token::Comma) {
        parser.advance();
        fields.push(parser.field_ref()?);
    }
    parser.expect_keyword("FROM")?;
    let (object, object_position) = match parser.advance() {
        (Token::Word(w), position) if !is_reserved(&w) => (w, position),
        (other, position) => {
            return Err(SoqlError::malformed(
                format!(
                    "unexpected token: '{}'; expected an object name",
                    describe(&other)
                ),
                position,
            ))
        }
    };
    let filter = if parser.eat_keyword("WHERE") {
        Some(parser.condition()?)
    } else {
        None
    };
    let mut order = Vec::new();
    if parser.eat_keyword("ORDER") {
        parser.expect_keyword("BY")?;
        order = parser.order_by()?;
    }
    let mut limit = None;
    if parser.eat_keyword("LIMIT") {
        limit = match parser.advance() {
            (Token::Number(_, text), _) if text.bytes().all(|b| b.is_ascii_digit()) => {
                text.parse().ok()
            }
            (other, position) => {
                return Err(SoqlError::malformed(
                    format!(
                        "LIMIT needs a non-negative whole number, found '{}'",
                        describe(&other)
                    ),
                    position,
                ))
            }
        };
    }
    if *parser.peek() != Token::End {
        return Err(parser.unexpected());
    }
    Ok(Query {
        fields,
        object,
        object_position,
        filter,
        order,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_in_datetimes() {
        let query =
            parse("SELECT Id FROM Lead WHERE SystemModstamp > 2024-05-01T14:00:00.250+02:00")
                .unwrap();
        let Some(Condition::Compare { value, .. }) = query.filter else {
            panic!("expected a comparison");
        };
        let expected = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
            + chrono::Duration::milliseconds(250);
        assert_eq!(value, Literal::DateTime(expected));
    }

    #[test]
    fn rejects_space_in_datetime() {
        let error = parse("SELECT Id FROM Lead WHERE SystemModstamp > 2024-05-01T00:00:00 00:00")
            .unwrap_err();
        assert_eq!(error.code, "MALFORMED_QUERY");
        assert!(error.message.contains("%2B"), "{}", error.message);
    }

    #[test]
    fn rejects_mixed_and_or() {
        let error =
            parse("SELECT Id FROM Lead WHERE Email = null AND State = 'NY' OR State = 'CA'")
                .unwrap_err();
        assert_eq!(error.code, "MALFORMED_QUERY");
    }

    /// Found by the fuzz tests: the excerpts of these two errors were cut inside the
    /// multi-byte character after the literal, which panicked.
    #[test]
    fn error_excerpt_keeps_whole_characters() {
        let error =
            parse("SELECT Id FROM Lead WHERE NumberOfEmployees = 15\u{fffd}96").unwrap_err();
        assert!(error.message.contains("'15\u{fffd}'"), "{}", error.message);
        let error =
            parse("SELECT Id FROM Lead WHERE SystemModstamp > 2024-05-01T00:00:00 00:\u{e9}")
                .unwrap_err();
        assert!(
            error.message.contains("00:00:00 00:\u{e9}'"),
            "{}",
            error.message
        );
    }

    /// Found by the fuzz tests: a few thousand nested `NOT` or parentheses overflowed the
    /// stack of the thread serving the query, which aborted the whole sandbox process.
    #[test]
    fn deep_nesting_rejected() {
        for (open, close) in [("(", ")"), ("NOT ", "")] {
            let query = format!(
                "SELECT Id FROM Lead WHERE {}Email = null{}",
                open.repeat(5000),
                close.repeat(5000)
            );
            let error = parse(&query).unwrap_err();
            assert_eq!(error.code, "MALFORMED_QUERY");
            assert!(
                error.message.contains("more than 64 levels"),
                "{}",
                error.message
            );
        }
        let allowed = format!(
            "SELECT Id FROM Lead WHERE {}Email = null{}",
            "(".repeat(MAX_NESTING - 1),
            ")".repeat(MAX_NESTING - 1)
        );
        assert!(parse(&allowed).is_ok());
    }

    #[test]
    fn caret_points_at_column() {
        let error = SoqlError::invalid_field("No such column", 11);
        let rendered = error.render("SELECT Id, Score__c FROM Lead");
        assert!(rendered.contains("ERROR at Row:1:Column:12"), "{rendered}");
        assert!(rendered.contains("\n           ^\n"), "{rendered}");
    }
}
